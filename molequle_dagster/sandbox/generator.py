"""Deterministic generator of one living Marketo instance (`InstanceState`) from `DataSettings` and `now`.

Columnar all the way: numpy draws indices into small word pools and pyarrow builds the strings, so there is
no Python object per person or per activity (1M people / 20M activities fit the 2-minute, 4-GiB budget).
Same seed and size -> identical tables.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.sandbox import catalog
from molequle_dagster.sandbox.config import DataSettings
from molequle_dagster.sandbox.lead_fields import DISPLAY, FIELD_IDS
from molequle_dagster.sandbox.lead_view import profile_seeds
from molequle_dagster.sandbox.model import (
    ACTIVITIES_SCHEMA,
    COMPANIES_SCHEMA,
    DELETED_LEADS_SCHEMA,
    MEMBERSHIPS_SCHEMA,
    MERGES_SCHEMA,
    NAMED_ACCOUNTS_SCHEMA,
    PEOPLE_SCHEMA,
    PROGRAMS_SCHEMA,
    TS,
    InstanceState,
)

DAY = 86_400
TS_ZONE = UTC
MEMBERSHIPS_PER_PERSON = 1.2
SCORE_FIELD_ID = FIELD_IDS["leadScore"]
# Lead fields whose history the generator fakes with Change Data Value (13): (field id, display name).
CHANGE_DATA_FIELDS: tuple[tuple[int, str], ...] = tuple(
    (FIELD_IDS[f], DISPLAY[f]) for f in ("title", "country", "company")
)
FIRST_EMAIL_ID, FIRST_FORM_ID, FIRST_PAGE_ID, FIRST_LINK_ID = 5001, 6001, 7001, 8001
FIRST_PROGRAM_ID, FIRST_CAMPAIGN_ID, FIRST_STATIC_LIST_ID, FIRST_SMART_LIST_ID = 1001, 2001, 3001, 4001
FIRST_SEGMENTATION_ID, FIRST_SEGMENT_ID = 1001, 2001  # captured segmentation ids start at 1001
CAMPAIGN_STREAM, EMAIL_STREAM = 17, 18  # their own random streams: adding them changes nothing else
GLOBAL_FORMS = ("Contact Us Form", "Newsletter Signup", "Demo Request", "Whitepaper Download")


def epoch(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("now: a timezone-aware datetime is required")
    return int(value.timestamp())


def ts_array(seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(seconds.astype(np.int64, copy=False), type=TS, mask=mask)


def pool(values: Any) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def join(*parts: Any) -> pa.Array:
    """Row-wise string concatenation; plain `str` parts broadcast."""
    return pc.binary_join_element_wise(*parts, "")


def suffix_for_duplicates(keys: np.ndarray, ids: np.ndarray) -> pa.Array:
    """'' for the first row of each key, the row's id for later ones (keeps emails/domains unique)."""
    _, first = np.unique(keys, return_index=True)
    duplicate = np.ones(len(keys), dtype=bool)
    duplicate[first] = False
    text = pc.cast(pa.array(ids), pa.string())
    return pc.if_else(pa.array(duplicate), text, "")


@dataclass
class AssetCatalog:
    """Everything an activity's primaryAttributeValueId/Value can point at, as one coded table."""

    ids: np.ndarray  # int64 per code
    names: pa.Array  # string per code
    emails: tuple[int, int]  # [start, end) code ranges
    forms: tuple[int, int]
    pages: tuple[int, int]
    links: tuple[int, int]
    fields: tuple[int, int]
    score: int
    lists: tuple[int, int]
    programs: tuple[int, int]


def generate(data: DataSettings, now: datetime) -> InstanceState:
    """Build the instance as of `now` (history spans `data.history_days` before it)."""
    rng = np.random.default_rng(data.seed)
    now_s = epoch(now)
    start_s = now_s - data.history_days * DAY

    channels = build_channels(start_s)
    programs = build_programs(rng, data.programs, channels, start_s, now_s)
    companies = build_companies(rng, max(1, round(data.people * data.companies_ratio)), start_s, now_s)
    named_accounts = build_named_accounts(rng, companies)
    people = build_people(rng, data.people, companies, start_s, now_s, profile_seed=data.seed)
    campaigns = build_campaigns(programs, now_s, data.seed)
    memberships = build_memberships(rng, people, programs, channels, now_s)
    static_lists = build_static_lists(rng, people, start_s)
    smart_lists = build_smart_lists(start_s)
    assets = build_assets(programs, static_lists)
    activities = build_activities(
        rng, data, people, memberships, static_lists, campaigns, assets, channels, programs, now_s
    )

    guid_max = pc.max(activities["marketoGUID"]).as_py() or 0
    return InstanceState(
        seed=data.seed,
        people=people,
        companies=companies,
        named_accounts=named_accounts,
        activities=activities,
        programs=programs,
        memberships=memberships,
        deleted_leads=DELETED_LEADS_SCHEMA.empty_table(),
        merges=MERGES_SCHEMA.empty_table(),
        channels=channels,
        smart_lists=smart_lists,
        static_lists=static_lists,
        campaigns=campaigns,
        emails=build_emails(programs, now_s, data.seed),
        segmentations=build_segmentations(start_s),
        my_tokens=build_tokens(programs),
        activity_types=catalog.activity_types(data.interesting_moments),
        next_lead_id=data.people + 1,
        next_activity_guid=guid_max + 1,
        created_at=datetime.fromtimestamp(now_s, tz=now.tzinfo),
    )


# --- small entities -----------------------------------------------------------------------------------


def build_channels(start_s: int) -> list[dict[str, Any]]:
    created = datetime.fromtimestamp(start_s - 30 * DAY, tz=TS_ZONE)
    return [
        {
            "id": channel_id,
            "name": name,
            "applicableProgramType": "program",
            "progressionStatuses": [
                {
                    "name": status,
                    "step": position * catalog.STEP_SIZE,
                    "description": None,
                    "hidden": False,
                    "success": success,
                }
                for position, (status, success) in enumerate(statuses)
            ],
            "createdAt": created,
            "updatedAt": created,
        }
        for channel_id, (name, _program_type, statuses) in enumerate(catalog.CHANNEL_SPECS, start=1)
    ]


def build_campaigns(
    programs: pa.Table, now_s: int, seed: int, first_program: int = 0, first_id: int = FIRST_CAMPAIGN_ID
) -> list[dict[str, Any]]:
    """The required campaigns (in the first programs) and one "Send Email" batch campaign per program.

    Each is created after its program and edited some time later (distinct createdAt/updatedAt, so
    incremental reads by `earliestUpdatedAt` have something to find). Dates come from their own random
    stream (`seed`), so adding campaigns changes nothing else the generator draws.
    """
    rng = np.random.default_rng([seed, CAMPAIGN_STREAM])
    program_rows = programs.slice(first_program).to_pylist()
    campaigns: list[dict[str, Any]] = []

    def add(name: str, kind: str, active: bool, requestable: bool, status: str, program: dict) -> None:
        campaign_id = first_id + len(campaigns)
        program_created = int(program["createdAt"].timestamp())
        created = min(now_s, program_created + int(rng.integers(60, 14 * DAY)))
        updated = created + int(rng.random() ** 2 * (now_s - created))  # most edits come soon after creation
        campaigns.append(
            {
                "id": campaign_id,
                "name": name,
                "description": "",
                "createdAt": datetime.fromtimestamp(created, tz=TS_ZONE),
                "updatedAt": datetime.fromtimestamp(updated, tz=TS_ZONE),
                "folder": {"id": program["id"], "type": "Program"},
                "status": status,
                "type": kind,
                "isSystem": False,
                "isActive": active,
                "isRequestable": requestable,
                "isCommunicationLimitEnabled": False,
                "recurrence": {"weekdayOnly": False},
                "qualificationRuleType": "once",
                "workspace": "Default",
                "smartListId": 9000 + campaign_id,
                "flowId": 10000 + campaign_id,
                "computedUrl": f"https://app-sandbox.marketo.com/#SC{campaign_id}A1",
                "parentProgramId": program["id"],
                "programName": program["name"],
            }
        )

    if first_program == 0:
        for index, (name, kind, active, requestable, status, _tokens) in enumerate(
            catalog.REQUIRED_CAMPAIGNS
        ):
            add(name, kind, active, requestable, status, program_rows[index % len(program_rows)])
    for program in program_rows:
        add(f"{program['name']}.Send Email", "batch", False, False, "Single Run", program)
    return campaigns


def build_emails(programs: pa.Table, now_s: int, seed: int, first_program: int = 0) -> list[dict[str, Any]]:
    """Three email assets per program, with the ids and "Program.Email n" names activities point at."""
    rng = np.random.default_rng([seed, EMAIL_STREAM, first_program])
    sender, address = catalog.EMAIL_FROM
    emails = []
    for offset, program in enumerate(programs.slice(first_program).to_pylist()):
        index = first_program + offset
        program_created = int(program["createdAt"].timestamp())
        for k in range(catalog.EMAILS_PER_PROGRAM):
            email_id = FIRST_EMAIL_ID + catalog.EMAILS_PER_PROGRAM * index + k
            created = min(now_s, program_created + int(rng.integers(60, 7 * DAY)))
            updated = created + int(rng.random() ** 3 * (now_s - created))
            draft = rng.random() < 0.15
            emails.append(
                {
                    "id": email_id,
                    "name": f"Email {k + 1}",
                    "description": "",
                    "createdAt": datetime.fromtimestamp(created, tz=TS_ZONE),
                    "updatedAt": datetime.fromtimestamp(updated, tz=TS_ZONE),
                    "url": f"https://app-sandbox.marketo.com/#EM{email_id}A1",
                    "subject": {"type": "Text", "value": f"{program['name']}: part {k + 1}"},
                    "fromName": {"type": "Text", "value": sender},
                    "fromEmail": {"type": "Text", "value": address},
                    "replyEmail": {"type": "Text", "value": address},
                    "folder": {"type": "Program", "value": program["id"], "folderName": program["name"]},
                    "operational": False,
                    "textOnly": False,
                    "publishToMSI": False,
                    "webView": k == 0,
                    "status": "draft" if draft else "approved",
                    "template": catalog.EMAIL_TEMPLATES[index % len(catalog.EMAIL_TEMPLATES)],
                    "workspace": "Default",
                    "isOpenTrackingDisabled": False,
                    "version": 2,
                    "autoCopyToText": True,
                    "ccFields": [],
                    "preHeader": "",
                }
            )
    return emails


def build_segmentations(start_s: int) -> list[dict[str, Any]]:
    created = datetime.fromtimestamp(start_s - 20 * DAY, tz=TS_ZONE)
    segmentations = []
    for i, (name, description, status, segment_names) in enumerate(catalog.SEGMENTATION_SPECS):
        segmentation_id = FIRST_SEGMENTATION_ID + i
        updated = datetime.fromtimestamp(start_s + i * 37 * DAY, tz=TS_ZONE)
        segmentations.append(
            {
                "id": segmentation_id,
                "name": name,
                "description": description,
                "createdAt": created,
                "updatedAt": updated,
                "url": f"https://app-sandbox.marketo.com/#SG{segmentation_id}A1",
                "folder": dict(catalog.SEGMENTATION_FOLDER),
                "status": status,
                "workspace": "Default",
                "segments": [
                    {
                        "id": FIRST_SEGMENT_ID + 100 * i + k,
                        "name": segment,
                        "description": "Leads that match no other segment" if segment == "Default" else "",
                        "createdAt": created,
                        "updatedAt": updated,
                        "url": f"https://app-sandbox.marketo.com/#SG{segmentation_id}B{k + 1}",
                        "segmentationId": segmentation_id,
                    }
                    for k, segment in enumerate(segment_names)
                ],
            }
        )
    return segmentations


def build_tokens(programs: pa.Table, first_program: int = 0) -> list[dict[str, Any]]:
    """My Tokens: the folders' (inherited by the programs below them) and each program's own, by channel;
    the first programs also carry the tokens their required campaigns send."""
    tokens = []
    if first_program == 0:
        for folder_id, folder_tokens in catalog.FOLDER_TOKENS.items():
            tokens += [_token("Folder", folder_id, n, t, v) for n, (t, v) in folder_tokens.items()]
    rows = programs.slice(first_program).to_pylist()
    for offset, program in enumerate(rows):
        own = dict(catalog.CHANNEL_TOKENS.get(program["channel"], {}))
        if first_program == 0 and offset < len(
            catalog.REQUIRED_CAMPAIGNS
        ):  # the required campaigns' programs
            own.update({n: ("text", v) for n, v in catalog.REQUIRED_CAMPAIGNS[offset][5].items()})
        tokens += [_token("Program", program["id"], n, t, v) for n, (t, v) in own.items()]
    return tokens


def _token(folder_type: str, folder_id: int, name: str, token_type: str, value: str) -> dict[str, Any]:
    return {
        "folderType": folder_type,
        "folderId": folder_id,
        "name": name,
        "type": token_type,
        "value": value,
    }


def build_smart_lists(start_s: int) -> list[dict[str, Any]]:
    created = datetime.fromtimestamp(start_s, tz=TS_ZONE)
    return [
        {
            "id": FIRST_SMART_LIST_ID + i,
            "name": name,
            "description": description,
            "createdAt": created,
            "updatedAt": created,
            "url": f"https://app-sandbox.marketo.com/#SL{FIRST_SMART_LIST_ID + i}A1",
            "folder": {"id": catalog.FOLDERS[0][0], "type": "Folder"},
            "workspace": "Default",
            "rule": dict(rule),
        }
        for i, (name, description, rule) in enumerate(catalog.SMART_LIST_SPECS)
    ]


def build_static_lists(rng: np.random.Generator, people: pa.Table, start_s: int) -> list[dict[str, Any]]:
    ids = people["id"].to_numpy()
    created = datetime.fromtimestamp(start_s + 30 * DAY, tz=TS_ZONE)
    lists = []
    for i, (name, share) in enumerate(catalog.STATIC_LIST_SPECS):
        list_id = FIRST_STATIC_LIST_ID + i
        members = ids[rng.random(len(ids)) < share]
        lists.append(
            {
                "id": list_id,
                "name": name,
                "description": f"{name} (sandbox)",
                "createdAt": created,
                "updatedAt": created,
                "folder": {"id": catalog.FOLDERS[0][0], "type": "Folder"},
                "computedUrl": f"https://app-sandbox.marketo.com/#ST{list_id}A1",
                "workspace": "Default",
                "programName": None,
                "lead_ids": members.tolist(),
            }
        )
    return lists


# --- programs, companies, people ----------------------------------------------------------------------


def build_programs(
    rng: np.random.Generator, count: int, channels: list[dict[str, Any]], start_s: int, now_s: int
) -> pa.Table:
    ids = np.arange(FIRST_PROGRAM_ID, FIRST_PROGRAM_ID + count, dtype=np.int64)
    channel_index = rng.permutation(np.arange(count) % len(channels))
    # Programs start before most of history so members can join early.
    created = np.sort(rng.integers(start_s - 60 * DAY, now_s - DAY, count))
    updated = created + (rng.random(count) * (now_s - created)).astype(np.int64)
    names, kinds, channel_names, statuses, folder_ids, folder_names, years = [], [], [], [], [], [], []
    for i in range(count):  # programs are few (tens to hundreds): plain Python is fine here
        name, kind, _ = catalog.CHANNEL_SPECS[channel_index[i]]
        topic = catalog.PROGRAM_TOPICS[i % len(catalog.PROGRAM_TOPICS)]
        years.append(datetime.fromtimestamp(int(created[i]), tz=TS_ZONE).year)
        names.append(f"{years[-1]} {topic} {name} {i + 1}")
        kinds.append(kind)
        channel_names.append(name)
        statuses.append(catalog.PROGRAM_STATUS_BY_TYPE[kind][i % len(catalog.PROGRAM_STATUS_BY_TYPE[kind])])
        folder_id, folder_name = catalog.FOLDERS[i % len(catalog.FOLDERS)]
        folder_ids.append(folder_id)
        folder_names.append(folder_name)
    return pa.table(
        {
            "id": ids,
            "name": names,
            "description": [f"{n} (sandbox)" for n in names],
            "type": kinds,
            "channel": channel_names,
            "folderId": pa.array(folder_ids, pa.int64()),
            "folderName": folder_names,
            "status": statuses,
            "workspace": ["Default"] * count,
            "createdAt": ts_array(created),
            "updatedAt": ts_array(updated),
        },
        schema=PROGRAMS_SCHEMA,
    )


def build_companies(rng: np.random.Generator, count: int, start_s: int, now_s: int) -> pa.Table:
    ids = np.arange(1, count + 1, dtype=np.int64)
    a = rng.integers(0, len(catalog.COMPANY_WORDS_A), count)
    b = rng.integers(0, len(catalog.COMPANY_WORDS_B), count)
    legal = rng.integers(0, len(catalog.LEGAL_SUFFIXES), count)
    words_a, words_b = pool(catalog.COMPANY_WORDS_A), pool(catalog.COMPANY_WORDS_B)
    name = join(words_a.take(a), " ", words_b.take(b), " ", pool(catalog.LEGAL_SUFFIXES).take(legal))
    stem = pc.utf8_lower(join(words_a.take(a), words_b.take(b)))
    domain = join(stem, suffix_for_duplicates(a * 1000 + b, ids), ".com")
    employees = np.clip(rng.lognormal(4.5, 1.8, count), 1, 500_000).astype(np.int32)
    created = rng.integers(start_s - 365 * DAY, now_s - DAY, count)
    updated = created + (rng.random(count) * (now_s - created)).astype(np.int64)
    return pa.table(
        {
            "id": ids,
            "externalCompanyId": join("EXT-", pc.cast(pa.array(ids), pa.string())),
            "company": name,
            "website": join("https://www.", domain),
            "industry": pool(catalog.INDUSTRIES).take(rng.integers(0, len(catalog.INDUSTRIES), count)),
            "numberOfEmployees": employees,
            "billingCountry": pool(catalog.COUNTRIES).take(rng.integers(0, len(catalog.COUNTRIES), count)),
            "createdAt": ts_array(created),
            "updatedAt": ts_array(updated),
        },
        schema=COMPANIES_SCHEMA,
    )


def company_domains(companies: pa.Table) -> pa.Array:
    return pc.replace_substring(companies["website"].combine_chunks(), "https://www.", "")


def build_named_accounts(rng: np.random.Generator, companies: pa.Table) -> pa.Table:
    """ABM named accounts for ~5% of companies (at least one)."""
    chosen = np.flatnonzero(rng.random(companies.num_rows) < 0.05)
    if len(chosen) == 0:
        chosen = np.array([0])
    picked = companies.take(chosen)
    guid_bits = rng.integers(0, 2**63 - 1, (len(chosen), 2))
    guids = [str(uuid.UUID(int=(int(hi) << 64 | int(lo)) & (2**128 - 1))) for hi, lo in guid_bits]
    return pa.table(
        {
            "marketoGUID": guids,
            "name": picked["company"],
            "domainName": company_domains(picked),
            "industry": picked["industry"],
            "country": picked["billingCountry"],
            "numberOfEmployees": picked["numberOfEmployees"],
            "createdAt": picked["createdAt"],
            "updatedAt": picked["updatedAt"],
        },
        schema=NAMED_ACCOUNTS_SCHEMA,
    )


def build_people(
    rng: np.random.Generator, count: int, companies: pa.Table, start_s: int, now_s: int, *, profile_seed: int
) -> pa.Table:
    ids = np.arange(1, count + 1, dtype=np.int64)
    created = np.sort(rng.integers(start_s, now_s, count))  # ids grow with creation time, as in Marketo
    first = rng.integers(0, len(catalog.FIRST_NAMES), count)
    last = rng.integers(0, len(catalog.LAST_NAMES), count)
    company = rng.integers(0, companies.num_rows, count)
    personal = rng.random(count) < catalog.PERSONAL_EMAIL_SHARE
    personal_domain = rng.integers(0, len(catalog.PERSONAL_DOMAINS), count)
    domain_key = np.where(personal, companies.num_rows + personal_domain, company)
    email_key = (domain_key.astype(np.int64) * len(catalog.FIRST_NAMES) + first) * len(
        catalog.LAST_NAMES
    ) + last
    domains = pa.concat_arrays([company_domains(companies), pool(catalog.PERSONAL_DOMAINS)])
    email = join(
        pool(a for _, a in catalog.FIRST_NAMES).take(first),
        ".",
        pool(a for _, a in catalog.LAST_NAMES).take(last),
        suffix_for_duplicates(email_key, ids),
        "@",
        domains.take(domain_key),
    )
    email = pc.if_else(
        pa.array(rng.random(count) < catalog.NULL_EMAIL_SHARE), pa.scalar(None, pa.string()), email
    )

    awkward = rng.random(count) < catalog.AWKWARD_TITLE_SHARE
    titles = pool(catalog.TITLES + catalog.AWKWARD_TITLES)
    title_index = np.where(
        awkward,
        len(catalog.TITLES) + rng.integers(0, len(catalog.AWKWARD_TITLES), count),
        rng.integers(0, len(catalog.TITLES), count),
    )
    own_country = rng.random(count) < 0.3
    country = pc.if_else(
        pa.array(own_country),
        pool(catalog.COUNTRIES).take(rng.integers(0, len(catalog.COUNTRIES), count)),
        companies["billingCountry"].combine_chunks().take(company),
    )
    score = np.clip(rng.gamma(2.0, 25.0, count), 0, 400).astype(np.int32)
    updated = created + (rng.random(count) * (now_s - created)).astype(np.int64)
    modified = np.where(
        rng.random(count) < 0.3, updated + (rng.random(count) * (now_s - updated)).astype(np.int64), updated
    )
    return pa.table(
        {
            "id": ids,
            "email": email,
            "firstName": pool(n for n, _ in catalog.FIRST_NAMES).take(first),
            "lastName": pool(n for n, _ in catalog.LAST_NAMES).take(last),
            "title": titles.take(title_index),
            "company": companies["company"].combine_chunks().take(company),
            "externalCompanyId": companies["externalCompanyId"].combine_chunks().take(company),
            "leadScore": score,
            "country": country,
            "unsubscribed": rng.random(count) < catalog.UNSUBSCRIBED_SHARE,
            "molequlePersonId": pa.nulls(count, pa.string()),
            "createdAt": ts_array(created),
            "updatedAt": ts_array(updated),
            "_modifiedAt": ts_array(modified),
            "_seed": profile_seeds(ids, profile_seed),
        },
        schema=PEOPLE_SCHEMA,
    )


# --- memberships --------------------------------------------------------------------------------------


@dataclass
class StatusTable:
    """All channels' statuses flattened: row = channel offset + position."""

    offsets: np.ndarray  # per channel index
    lengths: np.ndarray
    names: pa.Array
    success: np.ndarray
    ids: np.ndarray  # status ids for activities


def status_table(channels: list[dict[str, Any]]) -> StatusTable:
    names, success, ids, offsets, lengths = [], [], [], [], []
    for channel in channels:
        offsets.append(len(names))
        lengths.append(len(channel["progressionStatuses"]))
        for position, status in enumerate(channel["progressionStatuses"]):
            names.append(status["name"])
            success.append(status["success"])
            ids.append(catalog.status_id(channel["id"], position))
    return StatusTable(np.array(offsets), np.array(lengths), pool(names), np.array(success), np.array(ids))


def program_channel_index(programs: pa.Table, channels: list[dict[str, Any]]) -> np.ndarray:
    """Channel index (into `channels`) of each program row."""
    names = pa.array([c["name"] for c in channels])
    return pc.index_in(programs["channel"], value_set=names).to_numpy(zero_copy_only=False).astype(np.int64)


def build_memberships(
    rng: np.random.Generator, people: pa.Table, programs: pa.Table, channels: list[dict[str, Any]], now_s: int
) -> pa.Table:
    n_people, n_programs = people.num_rows, programs.num_rows
    per_person = np.minimum(rng.poisson(MEMBERSHIPS_PER_PERSON, n_people), n_programs)
    person_row = np.repeat(np.arange(n_people), per_person)
    program_row = rng.integers(0, n_programs, len(person_row))
    key = program_row.astype(np.int64) * (n_people + 1) + person_row
    key = np.unique(key)  # one membership per (program, person); sorted by program then person
    program_row, person_row = key // (n_people + 1), key % (n_people + 1)
    count = len(key)

    statuses = status_table(channels)
    channel = program_channel_index(programs, channels)[program_row]
    lengths = statuses.lengths[channel]
    position = 1 + np.floor(rng.random(count) ** 1.6 * (lengths - 1)).astype(np.int64)  # skew to early steps
    flat = statuses.offsets[channel] + position
    success = statuses.success[flat]

    person_created = people["createdAt"].to_numpy().astype("datetime64[s]").astype(np.int64)[person_row]
    program_created = programs["createdAt"].to_numpy().astype("datetime64[s]").astype(np.int64)[program_row]
    joined_from = np.maximum(person_created, program_created)
    joined = joined_from + (rng.random(count) * (now_s - joined_from)).astype(np.int64)
    updated = joined + (rng.random(count) * (now_s - joined) * 0.2).astype(np.int64)
    names = statuses.names.take(flat)
    return pa.table(
        {
            "programId": programs["id"].to_numpy()[program_row],
            "leadId": people["id"].to_numpy()[person_row],
            "statusName": names,
            "membershipDate": ts_array(joined),
            "reachedSuccess": success,
            "reachedSuccessDate": ts_array(joined, mask=~success),
            "acquiredBy": rng.random(count) < 0.25,
            "isExhausted": pc.equal(names, "Exhausted"),
            "createdAt": ts_array(joined),
            "updatedAt": ts_array(updated),
        },
        schema=MEMBERSHIPS_SCHEMA,
    )


# --- activities ---------------------------------------------------------------------------------------


def build_assets(programs: pa.Table, static_lists: list[dict[str, Any]]) -> AssetCatalog:
    ids: list[int] = []
    names: list[str] = []

    def section(entries: list[tuple[int, str]]) -> tuple[int, int]:
        start = len(ids)
        for asset_id, name in entries:
            ids.append(asset_id)
            names.append(name)
        return start, len(ids)

    program_ids = programs["id"].to_pylist()
    program_names = programs["name"].to_pylist()
    emails = section(
        [
            (FIRST_EMAIL_ID + 3 * i + k, f"{name}.Email {k + 1}")
            for i, name in enumerate(program_names)
            for k in range(3)
        ]
    )
    forms = section(
        [(FIRST_FORM_ID + i, name) for i, name in enumerate(GLOBAL_FORMS)]
        + [(FIRST_FORM_ID + 100 + i, f"{name}.Form") for i, name in enumerate(program_names)]
    )
    pages = section([(FIRST_PAGE_ID + i, f"Landing-Page-{i + 1}") for i in range(20)])
    links = section([(FIRST_LINK_ID + i, f"https://www.example.com/resources/{i + 1}") for i in range(30)])
    fields = section(list(CHANGE_DATA_FIELDS))
    score = section([(SCORE_FIELD_ID, "Lead Score")])[0]
    lists = section([(lst["id"], lst["name"]) for lst in static_lists])
    program_section = section(list(zip(program_ids, program_names, strict=True)))
    return AssetCatalog(
        np.array(ids, dtype=np.int64),
        pool(names),
        emails,
        forms,
        pages,
        links,
        fields,
        score,
        lists,
        program_section,
    )


@dataclass
class ActivityColumns:
    """Unsorted activity rows as numpy columns (-1 = null for codes and campaign ids)."""

    lead: np.ndarray
    date: np.ndarray
    type_id: np.ndarray
    asset_code: np.ndarray
    campaign: np.ndarray
    seed: np.ndarray


def concat_columns(parts: list[ActivityColumns]) -> ActivityColumns:
    """Concatenate field by field, releasing each part's field as soon as it is copied (peak memory)."""
    merged = {}
    for name in ("lead", "date", "type_id", "asset_code", "campaign", "seed"):
        merged[name] = np.concatenate([getattr(p, name) for p in parts])
        for part in parts:
            setattr(part, name, None)
    return ActivityColumns(**merged)


def pick(rng: np.random.Generator, section: tuple[int, int], count: int) -> np.ndarray:
    return rng.integers(section[0], section[1], count)


def random_activities(
    rng: np.random.Generator,
    data: DataSettings,
    people_ids: np.ndarray,
    people_created: np.ndarray,
    structural_per_person: float,
    assets: AssetCatalog,
    email_campaigns: np.ndarray,
    now_s: int,
) -> ActivityColumns:
    mix = {
        t: w
        for t, w in catalog.ACTIVITY_MIX.items()
        if data.interesting_moments or t != catalog.INTERESTING_MOMENT
    }
    types = np.array(list(mix), dtype=np.int32)
    weights = np.array(list(mix.values()))
    rate = max(0.0, data.activities_per_person - structural_per_person)
    counts = rng.poisson(rate, len(people_ids))
    row = np.repeat(np.arange(len(people_ids), dtype=np.int32), counts)
    n = len(row)
    type_id = types[rng.choice(len(types), n, p=weights / weights.sum())]
    date = people_created[row]
    date += (rng.random(n) * (now_s - date + 1)).astype(np.int64)
    np.minimum(date, now_s, out=date)
    code = np.full(n, -1, dtype=np.int32)
    for type_ids, section in (
        ((6, 7, 8, 10, 11, 27), assets.emails),
        ((2,), assets.forms),
        ((1,), assets.pages),
        ((3,), assets.links),
        ((13,), assets.fields),
    ):
        mask = np.isin(type_id, type_ids)
        code[mask] = pick(rng, section, int(mask.sum()))
    code[type_id == catalog.CHANGE_SCORE] = assets.score
    campaign = np.full(n, -1, dtype=np.int32)  # campaign ids are small: int32 halves this column
    is_email = np.isin(type_id, catalog.EMAIL_TYPES)
    campaign[is_email] = email_campaigns[rng.integers(0, len(email_campaigns), int(is_email.sum()))]
    del is_email
    seed = rng.integers(0, 2**62, n, dtype=np.int64)
    lead = people_ids[row]
    del row
    return ActivityColumns(lead, date, type_id, code, campaign, seed)


def pack_status_seed(
    old_position: np.ndarray, new_position: np.ndarray, acquired: np.ndarray, success: np.ndarray
) -> np.ndarray:
    """attributeSeed of a generated type-104 activity; `attributes.render_attributes` unpacks it."""
    return (
        old_position.astype(np.int64)
        | (new_position.astype(np.int64) << 8)
        | (acquired.astype(np.int64) << 16)
        | (success.astype(np.int64) << 17)
    )


def build_activities(
    rng: np.random.Generator,
    data: DataSettings,
    people: pa.Table,
    memberships: pa.Table,
    static_lists: list[dict[str, Any]],
    campaigns: list[dict[str, Any]],
    assets: AssetCatalog,
    channels: list[dict[str, Any]],
    programs: pa.Table,
    now_s: int,
) -> pa.Table:
    people_ids = people["id"].to_numpy()
    created = people["createdAt"].to_numpy().astype("datetime64[s]").astype(np.int64)
    n_people = len(people_ids)
    parts: list[ActivityColumns] = []

    # New Lead (12) at creation: PAV id = lead id, value null (as in the captured bulk export).
    parts.append(
        ActivityColumns(
            people_ids,
            created,
            np.full(n_people, catalog.NEW_LEAD, np.int32),
            np.full(n_people, -1, np.int32),
            np.full(n_people, -1, np.int32),
            rng.integers(0, 2**62, n_people, dtype=np.int64),
        )
    )

    # Change Status in Progression (104): joining each program, Not in Program -> current status.
    program_row = pc.index_in(memberships["programId"], value_set=programs["id"]).to_numpy()
    channel = program_channel_index(programs, channels)[program_row]
    # Status names repeat across channels: resolve each member's position within its own channel.
    position = np.zeros(memberships.num_rows, dtype=np.int64)
    names = memberships["statusName"].combine_chunks()
    for c in range(len(channels)):
        in_channel = channel == c
        if not in_channel.any():
            continue
        local = pool(s["name"] for s in channels[c]["progressionStatuses"])
        position[in_channel] = pc.index_in(names.filter(pa.array(in_channel)), value_set=local).to_numpy()
    n_members = memberships.num_rows
    parts.append(
        ActivityColumns(
            memberships["leadId"].to_numpy(),
            memberships["membershipDate"].to_numpy().astype("datetime64[s]").astype(np.int64),
            np.full(n_members, catalog.CHANGE_STATUS, np.int32),
            (assets.programs[0] + program_row).astype(np.int32),
            np.full(n_members, -1, np.int32),
            pack_status_seed(
                np.zeros(n_members, np.int64),
                position,
                memberships["acquiredBy"].to_numpy(zero_copy_only=False),
                memberships["reachedSuccess"].to_numpy(zero_copy_only=False),
            ),
        )
    )

    # Add to List (24) for static list members.
    row_of_id = np.empty(n_people + 1, dtype=np.int64)
    row_of_id[people_ids] = np.arange(n_people)
    for index, lst in enumerate(static_lists):
        members = np.array(lst["lead_ids"], dtype=np.int64)
        list_created = int(lst["createdAt"].timestamp())
        since = np.maximum(created[row_of_id[members]], list_created)
        date = since + (rng.random(len(members)) * (now_s - since)).astype(np.int64)
        parts.append(
            ActivityColumns(
                members,
                date,
                np.full(len(members), catalog.ADD_TO_LIST, np.int32),
                np.full(len(members), assets.lists[0] + index, np.int32),
                np.full(len(members), -1, np.int32),
                rng.integers(0, 2**62, len(members), dtype=np.int64),
            )
        )

    # Unsubscribe Email (9) for people who unsubscribed, from one of the emails they received.
    email_campaigns = np.array([c["id"] for c in campaigns if c["type"] == "batch"], dtype=np.int64)
    unsubscribed = np.flatnonzero(people["unsubscribed"].to_numpy(zero_copy_only=False))
    n_unsub = len(unsubscribed)
    when = created[unsubscribed] + (rng.random(n_unsub) * (now_s - created[unsubscribed])).astype(np.int64)
    parts.append(
        ActivityColumns(
            people_ids[unsubscribed],
            when,
            np.full(n_unsub, catalog.UNSUBSCRIBE_EMAIL, np.int32),
            pick(rng, assets.emails, n_unsub).astype(np.int32),
            email_campaigns[rng.integers(0, len(email_campaigns), n_unsub)].astype(np.int32),
            rng.integers(0, 2**62, n_unsub, dtype=np.int64),
        )
    )

    structural = 1 + (n_members + n_unsub + sum(len(x["lead_ids"]) for x in static_lists)) / max(1, n_people)
    parts.append(
        random_activities(rng, data, people_ids, created, structural, assets, email_campaigns, now_s)
    )
    columns = concat_columns(parts)
    del parts
    return to_activity_table(columns, assets)


def to_activity_table(columns: ActivityColumns, assets: AssetCatalog) -> pa.Table:
    """Sort by activityDate (stable), number GUIDs in that order; permute/release one column at a time."""
    order = np.argsort(columns.date, kind="stable")
    n = len(order)

    def take(name: str) -> np.ndarray:
        values = getattr(columns, name)[order]
        setattr(columns, name, None)
        return values

    out: dict[str, pa.Array] = {"marketoGUID": pa.array(np.arange(1, n + 1, dtype=np.int64))}
    out["activityDate"] = ts_array(take("date"))
    lead = take("lead")
    type_id = take("type_id")
    code = take("asset_code")
    pav_id = assets.ids[np.maximum(code, 0)]
    pav_id[code < 0] = -1
    new_lead = type_id == catalog.NEW_LEAD
    pav_id[new_lead] = lead[new_lead]
    del new_lead
    out["primaryAttributeValueId"] = pa.array(pav_id, mask=pav_id < 0)
    del pav_id
    out["primaryAttributeValue"] = assets.names.take(pa.array(code, mask=code < 0))
    del code
    out["leadId"] = pa.array(lead)
    out["activityTypeId"] = pa.array(type_id)
    campaign = take("campaign")
    out["campaignId"] = pc.cast(pa.array(campaign, mask=campaign < 0), pa.int64())
    del campaign
    out["attributeSeed"] = pa.array(take("seed"))
    out["attributesJson"] = pa.nulls(n, pa.string())
    return pa.table({name: out[name] for name in ACTIVITIES_SCHEMA.names}, schema=ACTIVITIES_SCHEMA)
