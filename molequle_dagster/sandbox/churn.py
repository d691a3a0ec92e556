"""The churn driver: one round of random, realistic change between syncs (new people, edits, email changes,
merges, deletions, new activities, status changes, new programs, renamed statuses, edited campaigns).

Every change goes through `mutations`, which keeps the dependent tables consistent; this module only decides
how much changes (`ChurnRates`), picks who and what, and reports it (`ChurnReport`). Deterministic: the same
state, `now`, rates and seed give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from molequle_dagster.sandbox import catalog, mutations
from molequle_dagster.sandbox.model import InstanceState

CHURNED_FIELDS = ("title", "country", "leadScore", "lastName", "unsubscribed")
CAMPAIGN_STREAM = 17
ACCOUNT_STREAM = 23


class ChurnRates(BaseModel):
    """How much changes per `apply_churn`: fractions of the current population, or counts."""

    model_config = ConfigDict(extra="forbid")

    new_people: float = Field(0.01, ge=0, description="new people, as a fraction of current people")
    attribute_updates: float = Field(0.02, ge=0, le=1, description="fraction of people with one field edited")
    email_changes: float = Field(0.005, ge=0, le=1, description="fraction of people whose email changes")
    merges: float = Field(0.002, ge=0, le=1, description="fraction of people merged away into another")
    deletions: float = Field(0.002, ge=0, le=1, description="fraction of people deleted")
    new_activities_per_person: float = Field(0.5, ge=0, description="new activities per current person")
    program_status_changes: float = Field(0.01, ge=0, le=1, description="fraction of memberships advancing")
    new_programs: int = Field(1, ge=0, description="programs created")
    status_renames: int = Field(0, ge=0, description="channel progression statuses renamed")
    account_updates: float = Field(
        0.0, ge=0, le=1, description="fraction of companies and of named accounts edited (industry, size)"
    )
    campaign_updates: float = Field(
        0.05, ge=0, le=1, description="fraction of smart campaigns edited (their updatedAt moves)"
    )


@dataclass
class ChurnReport:
    new_lead_ids: list[int] = field(default_factory=list)
    updated_lead_ids: list[int] = field(default_factory=list)
    email_changed_ids: list[int] = field(default_factory=list)
    merges: list[tuple[int, list[int]]] = field(default_factory=list)  # (winner, losers)
    deleted_lead_ids: list[int] = field(default_factory=list)
    new_activity_count: int = 0
    status_changes: list[tuple[int, int, str]] = field(default_factory=list)  # (programId, leadId, status)
    new_program_ids: list[int] = field(default_factory=list)
    renamed_statuses: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, old, new)
    updated_campaign_ids: list[int] = field(default_factory=list)
    updated_company_ids: list[int] = field(default_factory=list)
    updated_named_account_ids: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "new_people": len(self.new_lead_ids),
            "attribute_updates": len(self.updated_lead_ids),
            "email_changes": len(self.email_changed_ids),
            "merged_away": sum(len(x[1]) for x in self.merges),
            "deletions": len(self.deleted_lead_ids),
            "new_activities": self.new_activity_count,
            "program_status_changes": len(self.status_changes),
            "new_programs": len(self.new_program_ids),
            "status_renames": len(self.renamed_statuses),
            "campaign_updates": len(self.updated_campaign_ids),
            "account_updates": len(self.updated_company_ids) + len(self.updated_named_account_ids),
        }


# --- helpers ------------------------------------------------------------------------------------------
def _count(rate: float, population: int) -> int:
    """round(rate * population), but at least one when the rate is positive (small test instances)."""
    if rate <= 0 or population <= 0:
        return 0
    return int(min(population, max(1, round(rate * population))))


def apply_churn(
    state: InstanceState, now: datetime, rates: ChurnRates | dict[str, Any] | None = None, seed: int = 0
) -> ChurnReport:
    """One round of realistic change at `now`, deterministic in (state, now, rates, seed)."""
    if not isinstance(rates, ChurnRates):
        rates = ChurnRates.model_validate(rates or {})
    rng = np.random.default_rng([seed, state.seed])
    now_s = mutations.epoch_s(now)
    report = ChurnReport()
    with state.lock:
        report.new_program_ids = _churn_programs(state, rates.new_programs, now_s, rng)
        report.new_lead_ids = mutations.insert_people(
            state, _count(rates.new_people, state.people.num_rows), now_s, rng
        )
        report.updated_lead_ids = _churn_fields(
            state, _count(rates.attribute_updates, state.people.num_rows), now_s, rng
        )
        report.email_changed_ids = _churn_emails(
            state, _count(rates.email_changes, state.people.num_rows), now_s, rng
        )
        report.status_changes = _churn_statuses(state, rates, report.new_program_ids, now_s, rng)
        report.new_activity_count = _churn_activities(state, rates.new_activities_per_person, now_s, rng)
        report.merges = _churn_merges(state, _count(rates.merges, state.people.num_rows), now_s, rng)
        report.deleted_lead_ids = _churn_deletions(
            state, _count(rates.deletions, state.people.num_rows), now_s, rng
        )
        report.renamed_statuses = _churn_renames(state, rates.status_renames, now, rng)
        # its own random stream: campaign edits leave every other choice of this round as it was
        campaign_rng = np.random.default_rng([seed, state.seed, CAMPAIGN_STREAM])
        report.updated_campaign_ids = _churn_campaigns(state, rates.campaign_updates, now_s, campaign_rng)
        # likewise for accounts, so that adding account edits to a round changes nothing else in it
        account_rng = np.random.default_rng([seed, state.seed, ACCOUNT_STREAM])
        report.updated_company_ids, report.updated_named_account_ids = _churn_accounts(
            state, rates.account_updates, now_s, account_rng
        )
    return report


def _churn_accounts(
    state: InstanceState, share: float, now_s: int, rng: np.random.Generator
) -> tuple[list[int], list[str]]:
    edited: list[list[Any]] = []
    for table, key in mutations.ACCOUNT_TABLES.items():
        keys = getattr(state, table)[key].to_pylist()
        count = _count(share, len(keys))
        chosen = list(rng.choice(keys, size=count, replace=False)) if count else []
        edited.append(mutations.update_accounts(state, table, chosen, now_s))
    return edited[0], edited[1]


def _churn_campaigns(state: InstanceState, share: float, now_s: int, rng: np.random.Generator) -> list[int]:
    """Edit some campaigns that existed before this round (new programs' campaigns are already new)."""
    older = [c["id"] for c in state.campaigns if c["createdAt"].timestamp() < now_s]
    count = _count(share, len(older))
    if count == 0:
        return []
    chosen = sorted(int(i) for i in rng.choice(older, size=count, replace=False))
    return mutations.touch_campaigns(state, chosen, now_s)


def _pick_people(state: InstanceState, count: int, rng: np.random.Generator) -> np.ndarray:
    ids = state.people["id"].to_numpy()
    return np.sort(rng.choice(ids, size=min(count, len(ids)), replace=False)) if count else ids[:0]


def _churn_programs(state: InstanceState, count: int, now_s: int, rng: np.random.Generator) -> list[int]:
    if count == 0:
        return []
    year = datetime.fromtimestamp(now_s, UTC).year
    start = state.programs.num_rows
    specs = []
    for i in range(count):
        channel = state.channels[int(rng.integers(0, len(state.channels)))]["name"]
        topic = catalog.PROGRAM_TOPICS[int(rng.integers(0, len(catalog.PROGRAM_TOPICS)))]
        specs.append((channel, f"{year} {topic} {channel} {start + i + 1}"))
    return mutations.add_programs(state, specs, now_s)


def _churn_fields(state: InstanceState, count: int, now_s: int, rng: np.random.Generator) -> list[int]:
    leads = _pick_people(state, count, rng)
    which = rng.integers(0, len(CHURNED_FIELDS), len(leads))
    for index, field_name in enumerate(CHURNED_FIELDS):
        chosen = leads[which == index]
        if not len(chosen):
            continue
        n = len(chosen)
        if field_name == "title":
            values = [catalog.TITLES[i] for i in rng.integers(0, len(catalog.TITLES), n)]
        elif field_name == "country":
            values = [catalog.COUNTRIES[i] for i in rng.integers(0, len(catalog.COUNTRIES), n)]
        elif field_name == "leadScore":
            values = rng.integers(0, 300, n).tolist()
        elif field_name == "lastName":
            values = [catalog.LAST_NAMES[i][0] for i in rng.integers(0, len(catalog.LAST_NAMES), n)]
        else:
            current = (
                state.people["unsubscribed"]
                .combine_chunks()
                .take(pa.array(mutations.people_rows(state, chosen)))
            )
            values = [not bool(v) for v in current.to_pylist()]
        mutations.update_field(state, field_name, chosen, values, now_s)
    return leads.tolist()


def _churn_emails(state: InstanceState, count: int, now_s: int, rng: np.random.Generator) -> list[int]:
    leads = _pick_people(state, count, rng)
    if not len(leads):
        return []
    rows = mutations.people_rows(state, leads)
    people = state.people.take(pa.array(rows))
    first = [
        catalog.FIRST_NAMES[[n for n, _ in catalog.FIRST_NAMES].index(f)][1]
        if f in [n for n, _ in catalog.FIRST_NAMES]
        else "person"
        for f in people["firstName"].to_pylist()
    ]
    domains = [
        catalog.PERSONAL_DOMAINS[i] for i in rng.integers(0, len(catalog.PERSONAL_DOMAINS), len(leads))
    ]
    values = [f"{f}.{lead}.new@{d}" for f, lead, d in zip(first, leads.tolist(), domains, strict=True)]
    mutations.update_field(state, "email", leads, values, now_s)
    return leads.tolist()


def _churn_statuses(
    state: InstanceState, rates: ChurnRates, new_programs: list[int], now_s: int, rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    members = state.memberships
    count = _count(rates.program_status_changes, members.num_rows)
    changes: list[tuple[int, int, str]] = []
    if count:
        rows = np.sort(rng.choice(members.num_rows, size=count, replace=False))
        picked = members.take(pa.array(rows))
        channels = {p["id"]: p["channel"] for p in state.programs.select(["id", "channel"]).to_pylist()}
        for pid, lead, status in zip(
            picked["programId"].to_pylist(),
            picked["leadId"].to_pylist(),
            picked["statusName"].to_pylist(),
            strict=True,
        ):
            names = [s["name"] for s in mutations.channel_named(state, channels[pid])["progressionStatuses"]]
            position = names.index(status) if status in names else 0
            if position + 1 < len(names):  # progress forward, as Marketo only moves members ahead
                changes.append((pid, lead, names[position + 1]))
    for pid in new_programs:  # a new program gets a few members
        program = mutations.program_row(state, pid)
        names = [s["name"] for s in mutations.channel_named(state, program["channel"])["progressionStatuses"]]
        for lead in _pick_people(state, min(5, state.people.num_rows), rng).tolist():
            changes.append((pid, lead, names[1]))
    return mutations.set_statuses(state, changes, now_s)


def _churn_activities(state: InstanceState, per_person: float, now_s: int, rng: np.random.Generator) -> int:
    people = state.people.num_rows
    count = max(1, round(per_person * people)) if per_person > 0 and people > 0 else 0
    if count == 0:
        return 0
    # Change Data Value / Change Score only ever happen with the field change (`_churn_fields` makes both);
    # Marketo never logs one for a lead whose value stayed the same.
    field_changes = {catalog.CHANGE_DATA_VALUE, catalog.CHANGE_SCORE}
    mix = {
        t: w
        for t, w in catalog.ACTIVITY_MIX.items()
        if t in {x["id"] for x in state.activity_types} and t not in field_changes
    }
    types = np.array(list(mix), np.int64)
    weights = np.array(list(mix.values()))
    leads = state.people["id"].to_numpy()[rng.integers(0, state.people.num_rows, count)]
    chosen = types[rng.choice(len(types), count, p=weights / weights.sum())]
    return len(mutations.generate_activities(state, leads, chosen, now_s, rng))


def _churn_merges(
    state: InstanceState, count: int, now_s: int, rng: np.random.Generator
) -> list[tuple[int, list[int]]]:
    if count == 0 or state.people.num_rows < 2:
        return []
    pool = _pick_people(state, min(state.people.num_rows, 2 * count), rng)
    pool = rng.permutation(pool)
    groups = [(int(pool[i]), [int(pool[i + 1])]) for i in range(0, len(pool) - 1, 2)]
    if groups:
        mutations.merge_groups(state, groups, now_s)
    return groups


def _churn_deletions(state: InstanceState, count: int, now_s: int, rng: np.random.Generator) -> list[int]:
    leads = _pick_people(state, count, rng)
    if len(leads):
        mutations.delete_ids(state, leads, now_s)
    return leads.tolist()


def _churn_renames(
    state: InstanceState, count: int, now: datetime, rng: np.random.Generator
) -> list[tuple[str, str, str]]:
    renamed = []
    for _ in range(count):
        channel = state.channels[int(rng.integers(0, len(state.channels)))]
        statuses = channel["progressionStatuses"]
        old = statuses[int(rng.integers(1, len(statuses)))]["name"]  # never "Not in Program"
        new, suffix = f"{old} (renamed)", 2
        while new in [s["name"] for s in statuses]:
            new, suffix = f"{old} (renamed {suffix})", suffix + 1
        mutations.rename_status(state, channel["name"], old, new, now)
        renamed.append((channel["name"], old, new))
    return renamed
