"""Activity attributes and retention (docs/marketo.md §8.3, §8.4): the bulk `attributes` JSON cell, its REST
list form.

Generated activities carry only an int64 `attributeSeed`; the JSON is rendered on demand, per activity type,
with vectorised numpy hashing and pyarrow string joins (no Python object per row), because a bulk file of
millions of activities is rendered while it is written. Churned activities carry explicit `attributesJson`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.sandbox import catalog
from molequle_dagster.sandbox.lead_fields import FIELD_IDS
from molequle_dagster.sandbox.model import InstanceState

DAY = 86_400
TWENTY_FIVE_MONTHS_DAYS = 761  # 25 * 365.25 / 12, rounded up
# The "high volume" types Marketo keeps 90 days (docs/marketo.md §8.3).
NINETY_DAY_TYPES = frozenset({1, 3, 6, 7, 13, 19, 22, 24, 28, 36, 47, 300})
FOURTEEN_DAY_TYPES = frozenset({catalog.DELETE_LEAD})
PERMANENT_TYPES = frozenset({catalog.NEW_LEAD})
PROGRAM_MEMBER_ID_BASE = 100_000_000  # member id = program id * base + lead id (stable, no extra column)


def retention_days(type_id: int) -> int | None:
    """Days an activity of this type stays extractable (Marketo's retention policy, docs/marketo.md §8.3);
    None = forever."""
    if type_id in PERMANENT_TYPES:
        return None
    if type_id in FOURTEEN_DAY_TYPES:
        return 14
    if type_id in NINETY_DAY_TYPES:
        return 90
    return TWENTY_FIVE_MONTHS_DAYS


def program_member_id(program_id: int, lead_id: int) -> int:
    return program_id * PROGRAM_MEMBER_ID_BASE + lead_id


def visible_activities(state: InstanceState, now: datetime, enforce_retention: bool) -> pa.Table:
    """Activities still extractable at `now` (retention applied when `enforce_retention`)."""
    with state.lock:
        activities = state.activities
    if not enforce_retention or activities.num_rows == 0:
        return activities
    return activities.filter(pa.array(retained_mask(activities, now)))


def retained_mask(activities: pa.Table, now: datetime) -> np.ndarray:
    now_s = int(now.timestamp())
    special = sorted(NINETY_DAY_TYPES | FOURTEEN_DAY_TYPES | PERMANENT_TYPES)
    keep_days = np.array([retention_days(t) or 10**6 for t in special] + [TWENTY_FIVE_MONTHS_DAYS], np.int64)
    position = pc.fill_null(
        pc.index_in(activities["activityTypeId"], value_set=pa.array(special, pa.int32())), len(special)
    ).to_numpy()
    dates = _seconds(activities["activityDate"])
    return dates >= now_s - keep_days[position] * DAY


def attributes_as_list(json_text: str) -> list[dict[str, Any]]:
    """The REST form of an attributes cell: [{"name": ..., "value": ...}] in the cell's key order
    (docs/marketo.md §8.4)."""
    if json_text is None or json_text == "":
        return []
    parsed = json.loads(json_text)
    if not isinstance(parsed, dict):
        raise ValueError(f"json_text: expected a JSON object of attributes, got {type(parsed).__name__}")
    return [{"name": name, "value": value} for name, value in parsed.items()]


def splitmix64(seeds: np.ndarray, salt: int) -> np.ndarray:
    """An independent pseudo-random uint64 per seed and salt (splitmix64): values derived at read time from a
    per-row seed, as activity attributes and derived lead fields are, stay the same on every read."""
    z = seeds.astype(np.uint64, copy=False) + np.uint64(
        (0x9E3779B97F4A7C15 * (salt + 1)) & 0xFFFFFFFFFFFFFFFF
    )
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


# --- rendering ----------------------------------------------------------------------------------------------


class Sources(Protocol):
    """What rendering attributes reads besides the rows: an `InstanceState`, or an `AttributeSources`
    snapshot when the rendering runs on another thread while the instance keeps changing."""

    programs: pa.Table
    channels: list[dict[str, Any]]


@dataclass(frozen=True)
class AttributeSources:
    programs: pa.Table
    channels: list[dict[str, Any]]

    @classmethod
    def snapshot(cls, state: InstanceState) -> AttributeSources:
        """Taken under the state lock: status renames edit channel dicts in place, so they are copied."""
        with state.lock:
            return cls(state.programs, copy.deepcopy(state.channels))


@dataclass
class Rows:
    """The rows of one activity type being rendered, with what value builders need."""

    seeds: np.ndarray  # uint64
    lead_ids: np.ndarray
    pav_ids: np.ndarray  # -1 where null
    pav_values: pa.Array
    dates: pa.Array  # timestamp
    state: Sources

    def hash(self, salt: int) -> np.ndarray:
        return splitmix64(self.seeds, salt)


Fragment = Callable[[Rows, int], pa.Array]  # returns ',"Name":value' (or '' when the attribute is omitted)


def _key(name: str) -> str:
    return "," + json.dumps(name) + ":"


def _text(values: Any) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def integer(name: str, low: int, high: int) -> Fragment:
    def build(rows: Rows, salt: int) -> pa.Array:
        value = low + (rows.hash(salt) % np.uint64(high - low + 1)).astype(np.int64)
        return pc.binary_join_element_wise(_key(name), _text(value), "")

    return build


def boolean(name: str, share_true: float) -> Fragment:
    fragments = pa.array([_key(name) + "false", _key(name) + "true"])

    def build(rows: Rows, salt: int) -> pa.Array:
        return fragments.take((rows.hash(salt) % np.uint64(10_000) < share_true * 10_000).astype(np.int64))

    return build


def choice(name: str, values: Sequence[str | None]) -> Fragment:
    """One of `values` (None = attribute omitted, as Marketo omits empty attributes)."""
    fragments = pa.array(
        ["" if v is None else _key(name) + json.dumps(v, ensure_ascii=False) for v in values]
    )

    def build(rows: Rows, salt: int) -> pa.Array:
        return fragments.take((rows.hash(salt) % np.uint64(len(values))).astype(np.int64))

    return build


def ip_address(name: str) -> Fragment:
    def build(rows: Rows, salt: int) -> pa.Array:
        h = rows.hash(salt)
        octets = [
            _text(((h >> np.uint64(8 * i)) % np.uint64(254) + np.uint64(1)).astype(np.int64))
            for i in range(4)
        ]
        return pc.binary_join_element_wise(
            _key(name) + '"', octets[0], ".", octets[1], ".", octets[2], ".", octets[3], '"', ""
        )

    return build


def activity_date(name: str, fmt: str) -> Fragment:
    def build(rows: Rows, salt: int) -> pa.Array:
        return pc.binary_join_element_wise(_key(name) + '"', pc.strftime(rows.dates, format=fmt), '"', "")

    return build


def webpage_url(name: str) -> Fragment:
    """The visited page's path, derived from the landing page name in primaryAttributeValue."""

    def build(rows: Rows, salt: int) -> pa.Array:
        page = pc.fill_null(pc.utf8_lower(rows.pav_values), "index")
        return pc.binary_join_element_wise(_key(name) + '"/', page, '.html"', "")

    return build


def score_change(rows: Rows, salt: int) -> pa.Array:
    old = (rows.hash(salt) % np.uint64(150)).astype(np.int64)
    step = 1 + (rows.hash(salt + 1) % np.uint64(25)).astype(np.int64)
    negative = rows.hash(salt + 2) % np.uint64(4) == 0
    change = np.where(negative, -np.minimum(step, old), step)
    new = old + change
    sign = pa.array(np.where(change < 0, "", "+"))
    return pc.binary_join_element_wise(
        _key("Change Value") + '"',
        sign,
        _text(change),
        '"',
        _key("Old Value"),
        _text(old),
        _key("New Value"),
        _text(new),
        "",
    )


FIELD_VALUE_POOLS: dict[int, tuple[str, ...]] = {
    FIELD_IDS["title"]: catalog.TITLES,
    FIELD_IDS["country"]: catalog.COUNTRIES,
    FIELD_IDS["company"]: tuple(
        f"{a} {b}" for a in catalog.COMPANY_WORDS_A[:6] for b in catalog.COMPANY_WORDS_B[:4]
    ),
}


def data_value_change(rows: Rows, salt: int) -> pa.Array:
    """Old/New Value from the changed field's own vocabulary (field = primaryAttributeValueId)."""
    out = pa.array([""] * len(rows.seeds))  # fields without a vocabulary render no old/new value
    old_h, new_h = rows.hash(salt), rows.hash(salt + 1)
    for field_id, values in FIELD_VALUE_POOLS.items():
        mask = rows.pav_ids == field_id
        if not mask.any():
            continue
        vocab = pa.array([json.dumps(v, ensure_ascii=False) for v in values])
        size = np.uint64(len(values))
        fragment = pc.binary_join_element_wise(
            _key("Old Value"),
            vocab.take((old_h % size).astype(np.int64)),
            _key("New Value"),
            vocab.take((new_h % size).astype(np.int64)),
            "",
        )
        out = pc.if_else(pa.array(mask), fragment, out)
    return out


def status_change(rows: Rows, salt: int) -> pa.Array:
    """Type 104 generated at membership time: statuses come from the program's channel (seed-packed)."""
    state = rows.state
    program_ids = state.programs["id"].to_numpy()
    channel_names = [c["name"] for c in state.channels]
    program_channel = pc.index_in(state.programs["channel"], value_set=pa.array(channel_names)).to_numpy(
        zero_copy_only=False
    )
    row_of_program = np.searchsorted(program_ids, rows.pav_ids)  # programs are sorted by id
    row_of_program = np.clip(row_of_program, 0, max(0, len(program_ids) - 1))
    channel = np.asarray(program_channel)[row_of_program].astype(np.int64)
    offsets, names, ids = [], [], []
    for chan in state.channels:
        offsets.append(len(names))
        for position, status in enumerate(chan["progressionStatuses"]):
            names.append(json.dumps(status["name"], ensure_ascii=False))
            ids.append(catalog.status_id(chan["id"], position))
    offsets_np, names_pa, ids_np = np.array(offsets, np.int64), pa.array(names), np.array(ids, np.int64)
    seeds = rows.seeds.astype(np.int64)
    old_flat = offsets_np[channel] + (seeds & 0xFF)
    new_flat = offsets_np[channel] + ((seeds >> 8) & 0xFF)
    acquired = (seeds >> 16) & 1
    success = (seeds >> 17) & 1
    bools = pa.array(["false", "true"])
    member = rows.pav_ids * PROGRAM_MEMBER_ID_BASE + rows.lead_ids
    return pc.binary_join_element_wise(
        _key("Old Status ID"),
        _text(ids_np[old_flat]),
        _key("New Status ID"),
        _text(ids_np[new_flat]),
        _key("Acquired By"),
        bools.take(acquired),
        _key("Old Status"),
        names_pa.take(old_flat),
        _key("New Status"),
        names_pa.take(new_flat),
        _key("Program Member ID"),
        _text(member),
        _key("Success"),
        bools.take(success),
        "",
    )


def composite(build: Callable[[Rows, int], pa.Array]) -> Fragment:
    return build


USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/17.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
    None,
)
QUERY_PARAMETERS = (None, None, "utm_source=linkedin&utm_medium=social", 'utm_campaign=q3,launch&ref="nl"')
REFERRERS = (None, "https://www.google.com/", "https://www.linkedin.com/", "https://news.example.org/a?b=1,2")
# PHP-serialised form fields (docs/marketo.md §8.4); a few carry quotes, commas, LF, CR and a NUL so parsers
# get exercised.
FORM_FIELDS = (
    'a:2:{s:9:"FirstName";s:4:"Anna";s:8:"LastName";s:5:"Smith";}',
    'a:1:{s:5:"Email";s:17:"anna@example.com";}',
    'a:1:{s:7:"Comment";s:26:"Hi, I said "call me", ok?";}',
    'a:1:{s:7:"Comment";s:19:"line one\nline two";}',
    'a:1:{s:7:"Comment";s:18:"windows\r\nnewline";}',
    'a:1:{s:7:"Comment";s:8:"nul\x00byte";}',
)
EMAIL_RUN = (
    integer("Campaign Run ID", 1000, 99_999),
    integer("Choice Number", 0, 3),
    boolean("Has Predictive", 0.05),
    integer("Step ID", 1, 40),
    integer("Test Variant", 0, 2),
)
BOT = (choice("Bot Activity Pattern", (None, None, None, None, "Match User Agent")),)
DEVICE = (
    choice("Device", ("Desktop", "Mobile", "Tablet")),
    boolean("Is Bot Activity", 0.03),
    boolean("Is Mobile Device", 0.35),
    choice("Platform", ("Windows", "Mac OS", "iOS", "Android")),
)
BOUNCE = (
    choice("Category", ("1", "2", "3", "4")),
    choice("Details", ("550 5.1.1 User unknown", "552 Mailbox full", "421 Try again later")),
    choice("Email", ("bounce@example.com", "unknown@example.org")),
    choice("Subcategory", ("1003", "2001", "4002")),
)
MOMENT_DESCRIPTIONS = (
    "Visited pricing page",
    'Downloaded "State of Data" report',
    "Requested a demo, via form",
)

SPECS: dict[int, tuple[Fragment, ...]] = {
    1: (
        ip_address("Client IP Address"),
        choice("Query Parameters", QUERY_PARAMETERS),
        choice("Referrer URL", REFERRERS),
        choice("Search Engine", (None, None, "Google", "Bing")),
        choice("Search Query", (None, None, None, "marketo data sync")),
        choice("User Agent", USER_AGENTS),
        webpage_url("Webpage URL"),
    ),
    2: (
        ip_address("Client IP Address"),
        choice("Form Fields", FORM_FIELDS),
        choice("Query Parameters", QUERY_PARAMETERS),
        choice("Referrer URL", REFERRERS),
        choice("User Agent", USER_AGENTS),
        integer("Webpage ID", 7001, 7020),
    ),
    3: (
        ip_address("Client IP Address"),
        choice("Query Parameters", QUERY_PARAMETERS),
        choice("Referrer URL", REFERRERS),
        choice("User Agent", USER_AGENTS),
        integer("Webpage ID", 7001, 7020),
    ),
    6: EMAIL_RUN,
    7: EMAIL_RUN,
    8: (
        EMAIL_RUN[0],
        BOUNCE[0],
        EMAIL_RUN[1],
        BOUNCE[1],
        BOUNCE[2],
        EMAIL_RUN[2],
        EMAIL_RUN[3],
        BOUNCE[3],
        EMAIL_RUN[4],
    ),
    9: (
        EMAIL_RUN[0],
        ip_address("Client IP Address"),
        EMAIL_RUN[2],
        choice("User Agent", USER_AGENTS),
        integer("Webform ID", 6001, 6004),
    ),
    10: (
        *BOT,
        EMAIL_RUN[0],
        EMAIL_RUN[1],
        DEVICE[0],
        EMAIL_RUN[2],
        DEVICE[1],
        DEVICE[2],
        DEVICE[3],
        EMAIL_RUN[3],
        EMAIL_RUN[4],
        choice("User Agent", USER_AGENTS),
    ),
    11: (
        *BOT,
        EMAIL_RUN[0],
        EMAIL_RUN[1],
        DEVICE[0],
        DEVICE[1],
        DEVICE[2],
        boolean("Is Predictive", 0.02),
        choice("Link", ("https://www.example.com/offer", "https://www.example.com/blog?a=1,b=2")),
        choice("Link ID", ("1", "2", "3")),
        DEVICE[3],
        EMAIL_RUN[3],
        EMAIL_RUN[4],
        choice("User Agent", USER_AGENTS),
    ),
    12: (
        activity_date("Created Date", "%Y-%m-%d"),
        choice("Form Name", (None, None, "Contact Us Form")),
        choice("Lead Source", (None, "Website", "Trade Show", "Webinar")),
        choice("Source Type", ("New person", "Web form fillout", "Web service API", "List import")),
        choice("API Method Name", (None, None, "syncLead")),
    ),
    13: (
        composite(data_value_change),
        choice("Reason", ("Changed by user", "Web service API", "Form fill")),
        choice("Source", ("Web service API", "Marketo Flow Action", "Web form fillout")),
    ),
    22: (composite(score_change), choice("Reason", ("Behavior scoring", "Demographic scoring", None))),
    24: (choice("Source", ("Marketo Flow Action", "Web service API", "List import")),),
    25: (choice("Source", ("Marketo Flow Action", "Web service API")),),
    27: (EMAIL_RUN[0], BOUNCE[0], EMAIL_RUN[1], BOUNCE[1], BOUNCE[2], EMAIL_RUN[3], BOUNCE[3]),
    46: (
        choice("Type", ("Web", "Email", "Milestone")),
        choice("Description", MOMENT_DESCRIPTIONS),
        choice("Source", ("Marketo Flow Action", "Web service API")),
        activity_date("Date", "%Y-%m-%dT%H:%M:%SZ"),
    ),
    47: (choice("Source", ("Web service API", "Marketo Flow Action")),),
    104: (composite(status_change),),
    113: (integer("Track ID", 1, 5), choice("Track Name", ("Default", "Fast Track"))),
    123: (choice("Source", ("Web service API", "Marketo Flow Action")),),
}


def _seconds(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)


def _render_type(type_id: int, rows: Rows) -> pa.Array:
    specs = SPECS.get(type_id, ())
    if not specs:
        return pa.array(["{}"] * len(rows.seeds))
    body = pc.binary_join_element_wise(*(spec(rows, salt) for salt, spec in enumerate(specs)), "")
    # Every fragment starts with ',' (or is empty): drop the first comma and wrap in braces.
    return pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(body, 1), "}", "")


def render_attributes(state: Sources, activities: pa.Table) -> pa.StringArray:
    """The bulk `attributes` cell per row: a JSON object keyed by attribute display names
    (docs/marketo.md §7, §8.4).

    Uses `attributesJson` where set, else renders from `attributeSeed`. Pass batches (up to a few million
    rows): the result is one StringArray, whose text must stay under Arrow's 2 GiB string limit.
    """
    n = activities.num_rows
    if n == 0:
        return pa.array([], pa.string())
    explicit = activities["attributesJson"].combine_chunks()
    type_ids = activities["activityTypeId"].to_numpy()
    needs_render = pc.is_null(explicit).to_numpy(zero_copy_only=False)
    seeds = activities["attributeSeed"].to_numpy().astype(np.uint64)
    lead_ids = activities["leadId"].to_numpy()
    pav_ids = pc.fill_null(activities["primaryAttributeValueId"], -1).to_numpy()
    pav_values = activities["primaryAttributeValue"].combine_chunks()
    dates = activities["activityDate"].combine_chunks()

    parts_index: list[np.ndarray] = []
    parts_text: list[pa.Array] = []
    if not needs_render.all():
        keep = np.flatnonzero(~needs_render)
        parts_index.append(keep)
        parts_text.append(explicit.take(keep))
    for type_id in np.unique(type_ids[needs_render]):
        index = np.flatnonzero(needs_render & (type_ids == type_id))
        taker = pa.array(index)
        rows = Rows(
            seeds[index], lead_ids[index], pav_ids[index], pav_values.take(taker), dates.take(taker), state
        )
        parts_index.append(index)
        parts_text.append(_render_type(int(type_id), rows))
    if len(parts_index) == 1:
        return parts_text[0]
    order = np.empty(n, dtype=np.int64)
    order[np.concatenate(parts_index)] = np.arange(n)
    return pa.concat_arrays(parts_text).take(pa.array(order))


def explicit_json(attributes: dict[str, Any]) -> str:
    """How churn writes explicit attributes: compact JSON, attributes with no value omitted."""
    return json.dumps(
        {k: v for k, v in attributes.items() if v is not None}, ensure_ascii=False, separators=(",", ":")
    )
