"""Reading any lead field, stored or derived: `LeadView` is a consistent snapshot of the lead database.

Stored fields are columns of `InstanceState.people`. Derived fields (`lead_fields.DERIVED`) are computed per
batch of rows, vectorised, from three things a real instance would also tie them to:

* the person's profile seed (`people._seed`, a hash of the lead id and the instance seed; null for leads
  created through Sync Leads, whose fields Marketo leaves empty unless the caller sets them);
* the person's company, through `externalCompanyId` (Marketo shows a linked company's fields on the lead:
  `annualRevenue`, `billingCity`, `industry`... are the same for every lead of one company,
  docs/marketo.md §11.1);
* the stored fields themselves (`mktoName` is first + last name; `unsubscribedReason` only exists for an
  unsubscribed person; `personTimeZone` follows the person's city).

Values written to a derived field (Sync Leads, the mutation API, a merge filling the winner's gaps) are kept
in `InstanceState.lead_overrides` ({field: {lead id: value}}) and win over the derived value. System fields
Marketo sets on every lead (the `false` booleans, `leadPartitionId` 1, `leadPerson`, the source types) are
set for API-created leads too, as the captured exports show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.sandbox import catalog
from molequle_dagster.sandbox.attributes import splitmix64
from molequle_dagster.sandbox.lead_fields import BY_NAME, NAMES, LeadField
from molequle_dagster.sandbox.model import InstanceState

PROFILE_SALT = 0x5EED_1EAD
DAY = 86_400
SHARE_SCALE = 1_000_000


def profile_seeds(ids: np.ndarray, instance_seed: int) -> np.ndarray:
    """The `_seed` of generated people: a hash of (instance seed, lead id), so nothing is drawn from the
    generator's random stream and a person keeps their profile wherever they are created."""
    mixed = splitmix64(np.asarray(ids, np.uint64) ^ np.uint64(instance_seed & 0xFFFFFFFF), PROFILE_SALT)
    return (mixed >> np.uint64(1)).astype(np.int64)


# --- one batch of people being read -----------------------------------------------------------------------


@dataclass
class Rows:
    people: pa.Table  # the batch: stored columns of PEOPLE_SCHEMA
    view: LeadView
    ids: np.ndarray = field(init=False)
    seeds: np.ndarray = field(init=False)  # uint64; 0 where the person has no generated profile
    profiled: np.ndarray = field(init=False)
    _company_row: np.ndarray | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.ids = self.people["id"].to_numpy().astype(np.int64)
        raw = self.people["_seed"]
        self.profiled = pc.is_valid(raw).to_numpy(zero_copy_only=False)
        self.seeds = pc.fill_null(raw, 0).to_numpy().astype(np.uint64)

    def __len__(self) -> int:
        return len(self.ids)

    def hash(self, salt: int) -> np.ndarray:
        return splitmix64(self.seeds, salt)

    def share(self, salt: int, share: float) -> np.ndarray:
        """True for about `share` of the rows (independently per salt)."""
        return self.hash(salt) % np.uint64(SHARE_SCALE) < np.uint64(int(share * SHARE_SCALE))

    def pick(self, salt: int, size: int) -> np.ndarray:
        return (self.hash(salt) % np.uint64(max(1, size))).astype(np.int64)

    def column(self, name: str) -> pa.Array:
        return self.people[name].combine_chunks()

    @property
    def company_row(self) -> np.ndarray:
        """Row of each person's company in the view's companies (-1: no linked company)."""
        if self._company_row is None:
            rows = pc.index_in(self.people["externalCompanyId"], value_set=self.view.company_keys)
            self._company_row = pc.fill_null(rows, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return self._company_row

    @property
    def company_slot(self) -> np.ndarray:
        """Index into the view's padded company arrays: the company's row, or the padding slot."""
        return np.where(self.company_row >= 0, self.company_row, len(self.view.company_ids) - 1)

    def company_hash(self, salt: int) -> np.ndarray:
        ids = self.view.company_ids[self.company_slot].astype(np.uint64)
        return splitmix64(ids, salt + 7_777)

    def company_pick(self, salt: int, size: int) -> np.ndarray:
        return (self.company_hash(salt) % np.uint64(max(1, size))).astype(np.int64)


Derive = Callable[[Rows], pa.Array]


def _take(
    values: Sequence[Any] | pa.Array, index: np.ndarray, valid: np.ndarray, kind: pa.DataType
) -> pa.Array:
    """values[index] where `valid`, null elsewhere."""
    pool = values if isinstance(values, pa.Array) else pa.array(list(values), kind)
    return pool.take(pa.array(np.where(valid, index, 0), mask=~valid))


STRING = pa.string()


def choice(salt: int, values: Sequence[Any], share: float = 1.0, kind: pa.DataType = STRING) -> Derive:
    """One of `values` for `share` of the profiled people; null for the rest."""

    def build(rows: Rows) -> pa.Array:
        return _take(values, rows.pick(salt, len(values)), rows.profiled & rows.share(salt + 1, share), kind)

    return build


def flag(salt: int, share_true: float) -> Derive:
    """A system boolean: `true` for `share_true` of the profiled people, `false` (never null) otherwise."""

    def build(rows: Rows) -> pa.Array:
        return pa.array(rows.profiled & rows.share(salt, share_true))

    return build


def when_flag(salt: int, share_true: float, values: Sequence[str]) -> Derive:
    """The cause/reason text of a `flag(salt, share_true)`: set exactly where the flag is true."""

    def build(rows: Rows) -> pa.Array:
        on = rows.profiled & rows.share(salt, share_true)
        return _take(values, rows.pick(salt + 1, len(values)), on, pa.string())

    return build


def integer(salt: int, low: int, high: int, share: float) -> Derive:
    def build(rows: Rows) -> pa.Array:
        value = low + rows.pick(salt, high - low + 1)
        valid = rows.profiled & rows.share(salt + 1, share)
        return pa.array(value, pa.int64(), mask=~valid)

    return build


def amount(salt: int, low: float, high: float, share: float) -> Derive:
    """A currency/float value, rounded to cents, spread log-uniformly over [low, high]."""

    def build(rows: Rows) -> pa.Array:
        unit = (rows.hash(salt) % np.uint64(SHARE_SCALE)).astype(np.float64) / SHARE_SCALE
        value = np.round(np.exp(np.log(low) + unit * (np.log(high) - np.log(low))), 2)
        valid = rows.profiled & rows.share(salt + 1, share)
        return pa.array(value, pa.float64(), mask=~valid)

    return build


def day_between(salt: int, first: date, last: date, share: float) -> Derive:
    def build(rows: Rows) -> pa.Array:
        start = (first - date(1970, 1, 1)).days
        days = start + rows.pick(salt, (last - first).days + 1)
        valid = rows.profiled & rows.share(salt + 1, share)
        return pa.array(days.astype(np.int32), pa.date32(), mask=~valid)

    return build


def after_created(salt: int, within_days: int, share: float) -> Derive:
    """A datetime within `within_days` after the person was created."""

    def build(rows: Rows) -> pa.Array:
        created = pc.cast(rows.column("createdAt"), pa.int64()).to_numpy(zero_copy_only=False)
        value = created + rows.pick(salt, within_days * DAY)
        valid = rows.profiled & rows.share(salt + 1, share)
        return pa.array(value, pa.timestamp("s", tz="UTC"), mask=~valid)

    return build


def prefixed(prefix: str, derive: Derive) -> Derive:
    """`prefix` + the text of another derivation (null stays null)."""

    def build(rows: Rows) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.cast(derive(rows), pa.string()), "")

    return build


def constant(value: Any, kind: pa.DataType) -> Derive:
    def build(rows: Rows) -> pa.Array:
        return pa.array([value] * len(rows), kind)

    return build


def lead_id_reference(rows: Rows) -> pa.Array:
    """leadPerson / personPrimaryLeadInterest: the lead's own id (as in the captured exports)."""
    return pa.array(rows.ids, pa.int64())


def full_name(rows: Rows) -> pa.Array:
    """mktoName: 'First Last', or whichever of the two is set."""
    first, last = rows.column("firstName"), rows.column("lastName")
    both = pc.binary_join_element_wise(first, last, " ")
    return pc.coalesce(both, first, last)


def company_column(name: str) -> Derive:
    """A field of the linked company record (null without one)."""

    def build(rows: Rows) -> pa.Array:
        values = rows.view.companies[name].combine_chunks()
        linked = rows.company_row >= 0
        taken = values.take(pa.array(np.maximum(rows.company_row, 0), mask=~linked))
        return pc.cast(taken, BY_NAME[name].arrow_type) if name in BY_NAME else taken

    return build


def company_choice(salt: int, values: Sequence[Any], share: float = 1.0) -> Derive:
    """Per company, not per person: every lead of one company shows the same value."""

    def build(rows: Rows) -> pa.Array:
        linked = rows.company_row >= 0
        keep = rows.company_hash(salt + 1) % np.uint64(SHARE_SCALE) < np.uint64(int(share * SHARE_SCALE))
        return _take(values, rows.company_pick(salt, len(values)), linked & keep, pa.string())

    return build


def company_id(rows: Rows) -> pa.Array:
    """contactCompany: the id of the lead's company record."""
    linked = rows.company_row >= 0
    return pa.array(rows.view.company_ids[rows.company_slot], pa.int64(), mask=~linked)


def company_street(rows: Rows) -> pa.Array:
    linked = rows.company_row >= 0
    number = pc.cast(pa.array(1 + rows.company_pick(1, 9_998)), pa.string())
    street = _take(STREETS, rows.company_pick(2, len(STREETS)), linked, pa.string())
    return pc.binary_join_element_wise(number, street, " ")


def company_revenue(rows: Rows) -> pa.Array:
    """annualRevenue: employees x revenue per employee (60k-400k), to the thousand."""
    linked = rows.company_row >= 0
    per_head = 60_000 + rows.company_pick(3, 340_000)
    value = np.round(rows.view.company_employees[rows.company_slot] * per_head, -3)
    keep = rows.company_hash(4) % np.uint64(10) < np.uint64(8)  # 80% of companies report revenue
    return pa.array(value, pa.float64(), mask=~(linked & keep))


def company_phone(rows: Rows) -> pa.Array:
    linked = rows.company_row >= 0
    digits = 2_000_000 + rows.company_pick(5, 7_000_000)
    return _phone(company_place(rows), rows.company_hash(6), digits, linked)


def sic_code(rows: Rows) -> pa.Array:
    """A SIC code that matches the company's industry."""
    industry = company_column("industry")(rows)
    position = pc.index_in(industry, value_set=pa.array(catalog.INDUSTRIES))
    return pa.array(SIC_CODES, pa.string()).take(position)


# --- geography: city, state, postal code and time zone follow the person's (or company's) country ---------


@dataclass(frozen=True)
class Geo:
    countries: pa.Array
    offsets: np.ndarray  # per country index, into the flat city table
    sizes: np.ndarray
    cities: pa.Array
    states: pa.Array
    postal: list[str]
    zones: pa.Array
    dialing: list[str]


def _geo() -> Geo:
    countries: list[str] = []
    offsets, sizes = [], []
    cities, states, postal, zones, dialing = [], [], [], [], []
    for line in GEOGRAPHY.strip().splitlines():
        country, code, city, state, prefix, zone = (cell.strip() for cell in line.split("|"))
        if not countries or countries[-1] != country:
            countries.append(country)
            offsets.append(len(cities))
            sizes.append(0)
        sizes[-1] += 1
        cities.append(city)
        states.append(state)
        postal.append(prefix)
        zones.append(zone)
        dialing.append(code)
    return Geo(
        pa.array(countries),
        np.array(offsets, np.int64),
        np.array(sizes, np.int64),
        pa.array(cities),
        pa.array(states),
        postal,
        pa.array(zones),
        dialing,
    )


def _place(rows: Rows, country: pa.Array, salt_hash: np.ndarray) -> np.ndarray:
    """Index into the flat city table for each row: a city of its country (the US when unknown)."""
    geo = GEO
    index = pc.fill_null(pc.index_in(country, value_set=geo.countries), 0).to_numpy(zero_copy_only=False)
    index = index.astype(np.int64)
    return geo.offsets[index] + (salt_hash % geo.sizes[index].astype(np.uint64)).astype(np.int64)


def person_place(rows: Rows) -> np.ndarray:
    return _place(rows, rows.column("country"), rows.hash(11))


def company_place(rows: Rows) -> np.ndarray:
    country = company_column("billingCountry")(rows)
    return _place(rows, country, rows.company_hash(12))


def geo_field(part: str, *, company: bool, share: float = 1.0, salt: int = 13) -> Derive:
    def build(rows: Rows) -> pa.Array:
        place = company_place(rows) if company else person_place(rows)
        valid = rows.company_row >= 0 if company else rows.profiled & rows.share(salt, share)
        if part == "postal":
            hashed = rows.company_hash(salt + 1) if company else rows.hash(salt + 1)
            suffix = pc.cast(pa.array(100 + (hashed % np.uint64(900)).astype(np.int64)), pa.string())
            prefix = pa.array(GEO.postal).take(pa.array(place))
            text = pc.binary_join_element_wise(prefix, suffix, "")
            return pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))
        values = {"city": GEO.cities, "state": GEO.states, "zone": GEO.zones}[part]
        return values.take(pa.array(place, mask=~valid))

    return build


def _phone(place: np.ndarray, hashed: np.ndarray, digits: np.ndarray, valid: np.ndarray) -> pa.Array:
    """'+<country code> <3 digits> <7 digits>' for the place's country."""
    code = pa.array(GEO.dialing).take(pa.array(place))
    area = pc.cast(pa.array(200 + (hashed % np.uint64(800)).astype(np.int64)), pa.string())
    number = pc.cast(pa.array(digits), pa.string())
    text = pc.binary_join_element_wise("+", code, " ", area, " ", number, "")
    return pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))


def phone(salt: int, share: float) -> Derive:
    def build(rows: Rows) -> pa.Array:
        valid = rows.profiled & rows.share(salt, share)
        digits = 2_000_000 + rows.pick(salt + 2, 7_000_000)
        return _phone(person_place(rows), rows.hash(salt + 1), digits, valid)

    return build


def street_address(rows: Rows) -> pa.Array:
    valid = rows.profiled & rows.share(21, 0.4)
    number = pc.cast(pa.array(1 + rows.pick(22, 998)), pa.string())
    street = _take(STREETS, rows.pick(23, len(STREETS)), valid, pa.string())
    return pc.binary_join_element_wise(number, street, " ")


def source_type(salt: int) -> Derive:
    """originalSourceType / registrationSourceType: how the person entered; API-created: Web service API."""

    def build(rows: Rows) -> pa.Array:
        chosen = pa.array([s for s, _ in SOURCES]).take(pa.array(rows.pick(salt, len(SOURCES))))
        return pc.if_else(pa.array(rows.profiled), chosen, API_SOURCE)

    return build


def source_info(salt: int) -> Derive:
    def build(rows: Rows) -> pa.Array:
        chosen = pa.array([i for _, i in SOURCES]).take(pa.array(rows.pick(salt, len(SOURCES))))
        return pc.if_else(pa.array(rows.profiled), chosen, API_SOURCE)

    return build


def unsubscribed_reason(rows: Rows) -> pa.Array:
    unsubscribed = pc.fill_null(rows.column("unsubscribed"), False).to_numpy(zero_copy_only=False)
    return _take(UNSUBSCRIBE_REASONS, rows.pick(31, len(UNSUBSCRIBE_REASONS)), unsubscribed, pa.string())


def cookie(rows: Rows) -> pa.Array:
    """Munchkin cookie '_mch-<domain>-<ms>-<5 digits>' (captured shape), for people who visited a page."""
    valid = rows.profiled & rows.share(41, 0.7)
    created = pc.cast(rows.column("createdAt"), pa.int64()).to_numpy(zero_copy_only=False)
    millis = pc.cast(pa.array(created * 1000 - rows.pick(42, 86_400_000)), pa.string())
    tail = pc.cast(pa.array(10_000 + rows.pick(43, 89_999)), pa.string())
    text = pc.binary_join_element_wise("_mch-example.com-", millis, "-", tail, "")
    return pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))


def ip_address(salt: int, share: float) -> Derive:
    def build(rows: Rows) -> pa.Array:
        valid = rows.profiled & rows.share(salt, share)
        h = rows.hash(salt + 1)
        octets = [
            pc.cast(
                pa.array(((h >> np.uint64(8 * i)) % np.uint64(254) + np.uint64(1)).astype(np.int64)),
                pa.string(),
            )
            for i in range(4)
        ]
        text = pc.binary_join_element_wise(*octets, ".")
        return pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))

    return build


def inferred_company(rows: Rows) -> pa.Array:
    """Reverse-IP company: the person's company for some, unknown for the rest."""
    name = company_column("company")(rows)
    keep = rows.profiled & rows.share(51, 0.4)
    return pc.if_else(pa.array(keep), name, pa.scalar(None, pa.string()))


def inferred_geo(part: str) -> Derive:
    def build(rows: Rows) -> pa.Array:
        keep = rows.profiled & rows.share(52, 0.5)
        if part == "country":
            values: pa.Array = rows.column("country")
        elif part == "zone_area":
            values = pc.cast(pa.array(200 + (rows.hash(53) % np.uint64(800)).astype(np.int64)), pa.string())
        else:
            values = geo_field(part, company=False, share=1.0)(rows)
        return pc.if_else(pa.array(keep), values, pa.scalar(None, pa.string()))

    return build


def acquisition_program(rows: Rows) -> pa.Array:
    programs = rows.view.program_ids
    valid = rows.profiled & rows.share(61, 0.4) & (len(programs) > 0)
    if not len(programs):
        return pa.nulls(len(rows), pa.int64())
    return pa.array(programs[rows.pick(62, len(programs))], pa.int64(), mask=~valid)


def acquisition_date(rows: Rows) -> pa.Array:
    """Set with the acquisition program: when the person was acquired (their creation)."""
    valid = rows.profiled & rows.share(61, 0.4) & (len(rows.view.program_ids) > 0)
    created = pc.cast(rows.column("createdAt"), pa.int64()).to_numpy(zero_copy_only=False)
    return pa.array(created, pa.timestamp("s", tz="UTC"), mask=~valid)


def email_suspended_at(rows: Rows) -> pa.Array:
    on = rows.profiled & rows.share(71, 0.01)
    created = pc.cast(rows.column("createdAt"), pa.int64()).to_numpy(zero_copy_only=False)
    return pa.array(created + rows.pick(73, 200 * DAY), pa.timestamp("s", tz="UTC"), mask=~on)


# --- word pools ------------------------------------------------------------------------------------------

# country | dialing code | city | state or region | postal code prefix | IANA time zone
GEOGRAPHY = """
United States  |  1|San Francisco    |CA                   |94   |America/Los_Angeles
United States  |  1|New York         |NY                   |10   |America/New_York
United States  |  1|Chicago          |IL                   |60   |America/Chicago
United States  |  1|Austin           |TX                   |78   |America/Chicago
United States  |  1|Boston           |MA                   |02   |America/New_York
United States  |  1|Denver           |CO                   |80   |America/Denver
United Kingdom | 44|London           |England              |EC1  |Europe/London
United Kingdom | 44|Leeds            |England              |LS1  |Europe/London
Germany        | 49|Berlin           |Berlin               |10   |Europe/Berlin
Germany        | 49|München          |Bayern               |80   |Europe/Berlin
France         | 33|Paris            |Île-de-France        |75   |Europe/Paris
France         | 33|Lyon             |Auvergne-Rhône-Alpes |69   |Europe/Paris
Canada         |  1|Toronto          |ON                   |M5   |America/Toronto
Canada         |  1|Vancouver        |BC                   |V6   |America/Vancouver
Australia      | 61|Sydney           |NSW                  |20   |Australia/Sydney
Australia      | 61|Melbourne        |VIC                  |30   |Australia/Melbourne
Japan          | 81|Tokyo            |Tokyo                |100- |Asia/Tokyo
Japan          | 81|Osaka            |Osaka                |530- |Asia/Tokyo
India          | 91|Bengaluru        |Karnataka            |560  |Asia/Kolkata
India          | 91|Mumbai           |Maharashtra          |400  |Asia/Kolkata
Brazil         | 55|São Paulo        |SP                   |01   |America/Sao_Paulo
Netherlands    | 31|Amsterdam        |Noord-Holland        |10   |Europe/Amsterdam
Spain          | 34|Madrid           |Madrid               |28   |Europe/Madrid
Spain          | 34|Barcelona        |Cataluña             |08   |Europe/Madrid
Sweden         | 46|Stockholm        |Stockholm            |11   |Europe/Stockholm
Singapore      | 65|Singapore        |Singapore            |01   |Asia/Singapore
Mexico         | 52|Ciudad de México |CDMX                 |06   |America/Mexico_City
"""
GEO = _geo()
STREETS = (
    "Main St",
    "Market Street",
    "Broadway",
    "Oak Avenue",
    "Park Road",
    "King's Way",
    "Rue de Rivoli",
    "Hauptstraße",
)
SIC_CODES = ("7372", "6021", "8062", "5311", "3571", "8221", "7812", "4813", "4911", "4213", "2834", "7011")
SOURCES = (  # (originalSourceType, originalSourceInfo) as captured
    ("Web form fillout", "Form: Contact Us Form"),
    ("Web form fillout", "Form: Demo Request"),
    ("List import", "List: Trade Show Leads 2024"),
    ("New person", "Created manually"),
    ("Web service API", "Web service API"),
    ("Sales", "Sales prospecting"),
)
API_SOURCE = "Web service API"
UNSUBSCRIBE_REASONS = ("Too many emails", "Not relevant", "Unsubscribed via email link", "Requested by phone")
DEPARTMENTS = ("Marketing", "Sales", "Engineering", "Finance", "Operations", "IT", "Human Resources")
LEAD_SOURCES = (
    "Website",
    "Trade Show",
    "Webinar",
    "Paid Search",
    "Partner",
    "Content Syndication",
    "Referral",
)
LEAD_STATUSES = ("Open", "Contacted", "Working", "Qualified", "Unqualified", "Nurture")
SEARCH_PHRASES = ("marketing data platform", "customer 360", "marketo sync", "data mesh consulting")
REFERRERS = ("https://www.google.com/", "https://www.linkedin.com/", "https://news.example.org/post?id=42")


DERIVATIONS: dict[str, Derive] = {
    "site": company_choice(101, ("Headquarters", "Branch Office", "Regional Office"), share=0.3),
    "billingStreet": company_street,
    "billingCity": geo_field("city", company=True),
    "billingState": geo_field("state", company=True),
    "billingCountry": company_column("billingCountry"),
    "billingPostalCode": geo_field("postal", company=True, salt=102),
    "website": company_column("website"),
    "mainPhone": company_phone,
    "annualRevenue": company_revenue,
    "numberOfEmployees": company_column("numberOfEmployees"),
    "industry": company_column("industry"),
    "sicCode": sic_code,
    "mktoCompanyNotes": company_choice(103, ("Key account", "Renewal due in Q3", "Uses a competitor"), 0.05),
    "mktoName": full_name,
    "personType": constant("contact", pa.string()),
    "mktoIsPartner": flag(111, 0.02),
    "isLead": constant(True, pa.bool_()),
    "mktoIsCustomer": flag(112, 0.1),
    "isAnonymous": constant(False, pa.bool_()),
    "salutation": choice(113, ("Mr.", "Ms.", "Mrs.", "Dr."), 0.35),
    "middleName": choice(114, ("A.", "J.", "M.", "Lee", "Marie"), 0.1),
    "phone": phone(115, 0.6),
    "mobilePhone": phone(118, 0.3),
    "fax": phone(121, 0.04),
    "contactCompany": company_id,
    "dateOfBirth": day_between(124, date(1950, 1, 1), date(2002, 12, 31), 0.03),
    "address": street_address,
    "city": geo_field("city", company=False, share=0.7),
    "state": geo_field("state", company=False, share=0.7),
    "postalCode": geo_field("postal", company=False, share=0.7),
    "personTimeZone": geo_field("zone", company=False, share=0.85),
    "originalSourceType": source_type(125),
    "originalSourceInfo": source_info(125),
    "registrationSourceType": source_type(125),
    "registrationSourceInfo": source_info(125),
    "originalSearchEngine": choice(126, ("Google", "Bing", "DuckDuckGo"), 0.15),
    "originalSearchPhrase": choice(127, SEARCH_PHRASES, 0.1),
    "originalReferrer": choice(128, REFERRERS, 0.3),
    "emailInvalid": flag(131, 0.02),
    "emailInvalidCause": when_flag(131, 0.02, ("550 5.1.1 User unknown", "Mailbox unavailable")),
    "unsubscribedReason": unsubscribed_reason,
    "doNotCall": flag(133, 0.03),
    "mktoDoNotCallCause": when_flag(133, 0.03, ("Requested", "Do Not Call registry")),
    "doNotCallReason": when_flag(133, 0.03, ("Asked not to be called", "Wrong number")),
    "marketingSuspended": flag(135, 0.01),
    "marketingSuspendedCause": when_flag(135, 0.01, ("Legal hold", "Suspected spam trap")),
    "blackListed": flag(137, 0.005),
    "blackListedCause": when_flag(137, 0.005, ("Spam complaint",)),
    "mktoPersonNotes": choice(139, ("Met at the summit", "Prefers email", 'Said "call me, maybe"'), 0.05),
    "anonymousIP": ip_address(140, 0.3),
    "inferredCompany": inferred_company,
    "inferredCountry": inferred_geo("country"),
    "inferredCity": inferred_geo("city"),
    "inferredStateRegion": inferred_geo("state"),
    "inferredPostalCode": inferred_geo("postal"),
    "inferredMetropolitanArea": inferred_geo("city"),
    "inferredPhoneAreaCode": inferred_geo("zone_area"),
    "emailSuspended": flag(71, 0.01),
    "emailSuspendedCause": when_flag(71, 0.01, ("Soft bounce threshold",)),
    "emailSuspendedAt": email_suspended_at,
    "department": choice(141, DEPARTMENTS, 0.6),
    "cookies": cookie,
    "externalSalesPersonId": prefixed("SP-", integer(142, 1_000, 1_200, 0.2)),
    "leadPerson": lead_id_reference,
    "leadRole": choice(143, ("Decision Maker", "Influencer", "Evaluator", "Executive Sponsor"), 0.2),
    "leadSource": choice(144, LEAD_SOURCES, 0.8),
    "leadStatus": choice(145, LEAD_STATUSES, 0.9),
    "urgency": amount(146, 0.1, 10.0, 0.1),
    "priority": integer(147, 1, 5, 0.5),
    "relativeScore": integer(148, 1, 5, 0.5),
    "relativeUrgency": integer(149, 1, 5, 0.5),
    "rating": choice(150, ("Hot", "Warm", "Cold"), 0.3),
    "personPrimaryLeadInterest": lead_id_reference,
    "leadPartitionId": constant(1, pa.int64()),  # every lead is in the Default partition
    "leadRevenueCycleModelId": constant(None, pa.int64()),  # no revenue cycle model on this instance
    "leadRevenueStageId": constant(None, pa.int64()),
    "acquisitionProgramId": acquisition_program,
    "mktoAcquisitionDate": acquisition_date,
    "ecids": constant(None, pa.string()),  # Audience Sharing is off
    "productInterest": choice(151, ("Analytics", "Integration", "Governance", "AI Assistant"), 0.5),
    "accountTier": choice(152, ("Enterprise", "Mid-Market", "SMB"), 0.6),
    "gdprConsent": choice(153, (True, False), 0.7, pa.bool_()),
    "trialStartDate": day_between(154, date(2024, 1, 1), date(2026, 6, 30), 0.1),
    "npsScore": integer(155, 0, 10, 0.15),
    "lifetimeValue": amount(156, 500.0, 250_000.0, 0.1),
    "lastWebinarAt": after_created(157, 400, 0.1),
    "preferredLanguage": choice(158, ("English", "Deutsch", "Français", "Español", "日本語"), 0.4),
}


# --- the view ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Overrides:
    keys: np.ndarray  # sorted lead ids
    values: pa.Array  # aligned with keys


class LeadView:
    """A snapshot of the lead database (people, their companies, written values) for reading fields."""

    def __init__(self, state: InstanceState) -> None:
        with state.lock:
            self.people: pa.Table = state.people
            self.companies: pa.Table = state.companies
            self.program_ids = state.programs["id"].to_numpy()
            overrides = {name: dict(values) for name, values in state.lead_overrides.items() if values}
        self.company_keys = self.companies["externalCompanyId"].combine_chunks()
        # Padded with one slot at the end for people without a company, so lookups never go out of bounds.
        self.company_ids = np.append(self.companies["id"].to_numpy().astype(np.int64), 0)
        employees = pc.fill_null(self.companies["numberOfEmployees"], 0).to_numpy(zero_copy_only=False)
        self.company_employees = np.append(employees.astype(np.float64), 0.0)
        self._overrides = {name: _snapshot(name, values) for name, values in overrides.items()}

    def select(self, people: pa.Table | pa.RecordBatch, fields: Sequence[str]) -> pa.Table:
        """The given rows of the people table with `fields` (stored or derived), in that order."""
        table = people if isinstance(people, pa.Table) else pa.Table.from_batches([people])
        rows: Rows | None = None
        columns = []
        for name in fields:
            spec = BY_NAME.get(name)
            if spec is None:
                raise ValueError(
                    f"fields: unknown lead field {name!r}; expected names such as {', '.join(NAMES[:5])}"
                )
            if spec.stored:
                columns.append(table[name].combine_chunks())
                continue
            rows = rows if rows is not None else Rows(table, self)
            columns.append(self._derived(spec, rows))
        return pa.Table.from_arrays(columns, names=list(fields))

    def column(self, people: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
        return self.select(people, [name])[name].combine_chunks()

    def _derived(self, spec: LeadField, rows: Rows) -> pa.Array:
        values = DERIVATIONS[spec.name](rows)
        if values.type != spec.arrow_type:
            values = pc.cast(values, spec.arrow_type)
        written = self._overrides.get(spec.name)
        if written is None or len(rows) == 0:
            return values
        position = np.searchsorted(written.keys, rows.ids)
        position = np.minimum(position, len(written.keys) - 1)
        hit = written.keys[position] == rows.ids
        if not hit.any():
            return values
        taken = written.values.take(pa.array(position))
        return pc.if_else(pa.array(hit), taken, values)


def _snapshot(name: str, values: dict[int, Any]) -> _Overrides:
    keys = np.array(sorted(values), np.int64)
    return _Overrides(keys, pa.array([values[k] for k in keys.tolist()], BY_NAME[name].arrow_type))


def lead_table(state: InstanceState, fields: Sequence[str], people: pa.Table | None = None) -> pa.Table:
    """`fields` of `people` (default: every current person), read through a fresh view."""
    view = LeadView(state)
    return view.select(view.people if people is None else people, fields)
