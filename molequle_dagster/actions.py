"""Actions: run a configured smart campaign from Dagster (issue 8).

`run_marketo_action_job` runs one action from the settings' `actions` list:

* `kind: trigger` — Request Campaign for people chosen by Marketo lead id or by unified id (resolved through
  `person_unified_links`), in batches of at most 100, with the action's tokens as `{{my.Name}}`.
* `kind: schedule` — Schedule Campaign for a batch campaign, with `runAt` and tokens.

Everything is validated before the first call: the action's token definitions (required, unknown, type,
length), the targets, and the campaign itself (an active, requestable trigger campaign; a batch campaign
for schedules). Each batch's outcome goes to the op's metadata and to the lake table `action_log`.

Idempotency: batches are keyed by `idempotency_key` if given, else by the run's *root* run id, so a
re-execution of a failed run (same root) and an explicit relaunch with the same key both read the action
log and skip people whose batch already succeeded. A batch whose outcome is unknown (the request may have
reached Marketo: a crash or a network error after sending) is not re-sent unless `resend_uncertain` is set,
because a repeated trigger runs the campaign's flow twice for those people.
"""

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from molequle_dagster.assets.common import MARKETO_POOL, OWNERS
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.errors import (
    MalformedResponseError,
    MarketoError,
    MarketoTransientError,
)
from molequle_dagster.marketo.writes import TRIGGER_BATCH
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import ActionSettings, MolequleSettings, SettingsError, TokenSpec

ACTION_JOB = "run_marketo_action_job"
ACTION_OP = "run_marketo_action"
ACTION_LOG_TABLE = "action_log"
UNIFIED_LINKS_TABLE = "person_unified_links"
UNIFIED_LINEAGE_TABLE = "person_id_lineage"
SCHEDULE_MIN_DELAY = timedelta(minutes=5)  # Marketo refuses an earlier runAt (1042)
SCHEDULE_MAX_AHEAD = timedelta(days=730)
MAX_CONSECUTIVE_FAILURES = 3  # after this many failed batches in a row the problem is not the batch
SHOWN_IDS = 10  # how many ids an error message lists

# Statuses in the action log. `sending` is written before the call, so a crash mid-call leaves it behind.
SENDING, SUCCEEDED, FAILED, UNCERTAIN = "sending", "succeeded", "failed", "uncertain"

ACTION_LOG_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("action", pa.string()),
        ("kind", pa.string()),
        ("campaign_id", pa.int64()),
        ("batch_index", pa.int32()),
        ("lead_ids", pa.list_(pa.int64())),
        ("status", pa.string()),
        ("code", pa.string()),
        ("message", pa.string()),
        ("fingerprint", pa.string()),
        ("at", pa.timestamp("s", tz="UTC")),
    ]
)


class ActionInputError(ValueError):
    """Bad action input; `errors` holds one "field: problem" line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


# --- run config ------------------------------------------------------------------------------------------
class MarketoActionConfig(dg.Config):
    """What to run: one configured action, its people and its token values."""

    action: str = Field(description="Name of the action in the settings' `actions` list.")
    lead_ids: list[int] = Field(
        default_factory=list,
        description="Marketo lead ids to trigger the campaign for (trigger actions; added to unified_ids).",
    )
    unified_ids: list[str] = Field(
        default_factory=list,
        description="Molequle unified person ids; each is resolved to all its Marketo lead ids through "
        "person_unified_links (trigger actions).",
    )
    tokens: dict[str, Any] = Field(
        default_factory=dict,
        description="Token name -> value, for the action's declared My Tokens (names without {{my. }}). "
        "An empty value for an optional token keeps the program's own value.",
    )
    run_at: str | None = Field(
        default=None,
        description="Schedule actions: when Marketo runs the batch campaign, ISO 8601 with a timezone "
        "(e.g. 2030-01-31T09:00:00+00:00), at least 5 minutes ahead. Empty: about 5 minutes after the call.",
    )
    idempotency_key: str | None = Field(
        default=None,
        description="Batches already sent successfully under this key are never sent again. Empty: the "
        "run's root run id (so re-executing a failed run only sends what is left).",
    )
    resend_uncertain: bool = Field(
        default=False,
        description="Re-send batches whose outcome is unknown (the request may have reached Marketo). "
        "Check in Marketo first: a repeated trigger runs the flow twice.",
    )


# --- validation ------------------------------------------------------------------------------------------
_INTEGER = re.compile(r"^[+-]?\d+$")


def _bare_token_name(name: str) -> str:
    """Accept "Name", "my.Name" and "{{my.Name}}" for a token called Name."""
    bare = name.strip()
    if bare.startswith("{{") and bare.endswith("}}"):
        bare = bare[2:-2].strip()
    return bare.removeprefix("my.")


def _token_text(spec: TokenSpec, value: Any) -> str:
    """The value as Marketo receives it; raises ValueError saying what the type expects."""
    if isinstance(value, bool):
        raise ValueError(f"expected type {spec.type}, got a boolean")
    if spec.type == "integer":
        if isinstance(value, int) or (isinstance(value, str) and _INTEGER.match(value.strip())):
            return str(int(value))
        raise ValueError(f"expected an integer, got {value!r}")
    if spec.type == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {value!r}")
        return str(value).strip()
    if spec.type == "date":
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        try:
            return date.fromisoformat(str(value).strip()).isoformat()
        except ValueError:
            raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected a {spec.type}, got {type(value).__name__}")
    text = str(value)
    if spec.type == "url":
        parsed = urlparse(text.strip())
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.netloc
            or any(c.isspace() for c in text.strip())
        ):
            raise ValueError(f"expected an http(s) URL such as https://www.example.com/page, got {value!r}")
        return text.strip()
    return text


def validate_tokens(action: ActionSettings, values: Mapping[str, Any]) -> dict[str, str]:
    """Check token values against the action's definitions; returns {bare name: text} to send.

    Unknown names, missing required ones, wrong types and over-long values are all reported at once.
    """
    specs = {t.name: t for t in action.tokens}
    errors: list[str] = []
    given: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = _bare_token_name(str(raw_name))
        if name not in specs:
            allowed = ", ".join(sorted(specs)) or "(none)"
            errors.append(
                f"tokens.{raw_name}: not a token of action {action.name!r}; allowed tokens: {allowed}"
            )
            continue
        given[name] = value
    send: dict[str, str] = {}
    for name, spec in specs.items():
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                errors.append(
                    f"tokens.{name}: required by action {action.name!r} (a {spec.type} of at most "
                    f"{spec.max_length} characters)"
                )
            continue  # an empty optional token keeps the program's value
        try:
            text = _token_text(spec, value)
        except ValueError as error:
            errors.append(f"tokens.{name}: {error}")
            continue
        if len(text) > spec.max_length:
            errors.append(f"tokens.{name}: at most {spec.max_length} characters, got {len(text)}")
            continue
        send[name] = text
    if errors:
        raise ActionInputError(errors)
    return send


def parse_run_at(value: str | None, now: datetime) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        run_at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ActionInputError(
            [f"run_at: expected an ISO 8601 date-time such as 2030-01-31T09:00:00+00:00, got {value!r}"]
        ) from None
    if run_at.tzinfo is None:
        raise ActionInputError([f"run_at: needs a timezone (e.g. +00:00), got {value!r}"])
    if run_at < now + SCHEDULE_MIN_DELAY:
        raise ActionInputError(
            [f"run_at: must be at least 5 minutes from now ({now.isoformat()}), got {value!r}"]
        )
    if run_at > now + SCHEDULE_MAX_AHEAD:
        raise ActionInputError([f"run_at: must be at most 2 years ahead, got {value!r}"])
    return run_at.astimezone(UTC)


def check_targets(action: ActionSettings, config: MarketoActionConfig) -> None:
    if action.kind == "schedule":
        if config.lead_ids or config.unified_ids:
            raise ActionInputError(
                [
                    f"lead_ids/unified_ids: action {action.name!r} schedules a batch campaign, "
                    "which selects its own people; leave them empty"
                ]
            )
        return
    if config.run_at:
        raise ActionInputError([f"run_at: only schedule actions take run_at; {action.name!r} is a trigger"])
    if not config.lead_ids and not config.unified_ids:
        raise ActionInputError(["lead_ids/unified_ids: give at least one person to trigger the campaign for"])
    bad = [i for i in config.lead_ids if i < 1]
    if bad:
        raise ActionInputError([f"lead_ids: expected positive Marketo lead ids, got {bad[:SHOWN_IDS]}"])


def check_campaign(action: ActionSettings, campaign: Mapping[str, Any] | None) -> int:
    """The campaign id, if the campaign can run this kind of action through the API; else ActionInputError."""
    ref = action.campaign
    named = f"id {ref.id}" if ref.id is not None else f"named {ref.name!r}"
    if campaign is None:
        raise ActionInputError(
            [f"campaign: action {action.name!r} uses the smart campaign {named}, which Marketo does not have"]
        )
    label = f"campaign {campaign.get('name')!r} (id {campaign.get('id')})"
    problems: list[str] = []
    if action.kind == "trigger":
        if campaign.get("type") != "trigger":
            problems.append(f"it is a {campaign.get('type')} campaign, not a trigger campaign")
        if not campaign.get("isActive"):
            problems.append(f"it is not active (status {campaign.get('status')!r})")
        if not campaign.get("isRequestable"):
            problems.append("it has no 'Campaign is Requested' (Web Service API) trigger")
        verb = "requested"
    else:
        if campaign.get("type") != "batch":
            problems.append(f"it is a {campaign.get('type')} campaign; only batch campaigns can be scheduled")
        verb = "scheduled"
    if problems:
        raise ActionInputError(
            [
                f"campaign: {label} of action {action.name!r} cannot be {verb} through the "
                f"API: {'; '.join(problems)}"
            ]
        )
    return int(campaign["id"])


def fingerprint(
    action: ActionSettings, campaign_id: int, tokens: Mapping[str, str], run_at: datetime | None
) -> str:
    """What a request means; reusing an idempotency key for a different request is refused."""
    payload = json.dumps(
        {
            "action": action.name,
            "campaign": campaign_id,
            "tokens": dict(sorted(tokens.items())),
            "run_at": run_at.isoformat() if run_at else None,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- people ----------------------------------------------------------------------------------------------
def resolve_lead_ids(lake: Lake, lead_ids: Sequence[int], unified_ids: Sequence[str]) -> list[int]:
    """Lead ids first as given, then every lead of each unified id; duplicates dropped, order kept.

    A unified id retired by a later unification run follows `person_id_lineage` to its survivor.
    """
    resolved: list[int] = list(lead_ids)
    if unified_ids:
        wanted = list(dict.fromkeys(unified_ids))
        links = lake.read_current(UNIFIED_LINKS_TABLE, columns=["source_id", "unified_id"])
        if links is None:
            raise ActionInputError(
                [
                    "unified_ids: person_unified_links is not in the lake yet; run a sync first "
                    "or give lead_ids"
                ]
            )
        current = _follow_lineage(lake, wanted)
        matched = links.filter(
            pc.is_in(links["unified_id"], value_set=pa.array(list(current.values()), pa.string()))
        )
        by_unified: dict[str, list[int]] = {}
        for row in matched.to_pylist():
            by_unified.setdefault(row["unified_id"], []).append(int(row["source_id"]))
        unknown = [u for u in wanted if current[u] not in by_unified]
        if unknown:
            raise ActionInputError(
                [
                    f"unified_ids: no Marketo lead has unified id(s) {unknown[:SHOWN_IDS]}"
                    f"{' …' if len(unknown) > SHOWN_IDS else ''}"
                ]
            )
        for unified in wanted:
            resolved.extend(sorted(by_unified[current[unified]]))
    return list(dict.fromkeys(resolved))


def _follow_lineage(lake: Lake, unified_ids: list[str]) -> dict[str, str]:
    lineage = lake.read_current(UNIFIED_LINEAGE_TABLE, columns=["retired_id", "survivor_id"])
    survivor = (
        {}
        if lineage is None
        else dict(zip(lineage["retired_id"].to_pylist(), lineage["survivor_id"].to_pylist(), strict=True))
    )
    out: dict[str, str] = {}
    for unified in unified_ids:
        seen, current = {unified}, unified
        while current in survivor and survivor[current] not in seen:  # chains; cycles cannot loop forever
            current = survivor[current]
            seen.add(current)
        out[unified] = current
    return out


def batches(lead_ids: Sequence[int], size: int = TRIGGER_BATCH) -> list[list[int]]:
    return [list(lead_ids[i : i + size]) for i in range(0, len(lead_ids), size)]


# --- the action log --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogEntry:
    run_id: str
    batch_index: int
    lead_ids: tuple[int, ...]
    status: str
    fingerprint: str


class ActionLog:
    """The `action_log` lake table: one row per batch event (sending, then succeeded/failed/uncertain).

    Rewritten whole on each append (atomic, small); concurrent runs of actions could lose each other's rows,
    so the job's pool keeps Marketo steps few, and one key should only be run by one run at a time.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def read(self) -> pa.Table:
        table = self.lake.read_current(ACTION_LOG_TABLE)
        return ACTION_LOG_SCHEMA.empty_table() if table is None else table

    def entries(self, key: str, action: str) -> list[LogEntry]:
        table = self.read()
        mine = table.filter(
            pc.and_(pc.equal(table["idempotency_key"], key), pc.equal(table["action"], action))
        )
        return [
            LogEntry(r["run_id"], r["batch_index"], tuple(r["lead_ids"] or ()), r["status"], r["fingerprint"])
            for r in mine.select(["run_id", "batch_index", "lead_ids", "status", "fingerprint"]).to_pylist()
        ]

    def append(self, row: dict[str, Any]) -> None:
        added = pa.Table.from_pylist([row], schema=ACTION_LOG_SCHEMA)
        self.lake.write_current(
            ACTION_LOG_TABLE, pa.concat_tables([self.read().cast(ACTION_LOG_SCHEMA), added])
        )


@dataclass(frozen=True)
class Progress:
    """What earlier attempts under one key achieved."""

    done: frozenset[int]
    uncertain: frozenset[int]
    fingerprints: frozenset[str]
    scheduled: bool  # a schedule action already succeeded
    schedule_uncertain: bool


def progress(entries: Iterable[LogEntry]) -> Progress:
    last: dict[tuple[str, int], LogEntry] = {}
    for entry in entries:  # rows are in write order: the last per batch is its outcome
        last[(entry.run_id, entry.batch_index)] = entry
    done = {i for e in last.values() if e.status == SUCCEEDED for i in e.lead_ids}
    open_ = [e for e in last.values() if e.status in (SENDING, UNCERTAIN)]
    uncertain = {i for e in open_ for i in e.lead_ids} - done
    return Progress(
        done=frozenset(done),
        uncertain=frozenset(uncertain),
        fingerprints=frozenset(e.fingerprint for e in last.values() if e.status != FAILED),
        scheduled=any(e.status == SUCCEEDED and not e.lead_ids for e in last.values()),
        schedule_uncertain=any(not e.lead_ids for e in open_),
    )


def outcome_of(error: MarketoError) -> str:
    """`uncertain` when Marketo may have acted on the request (network error or unreadable answer after
    sending); `failed` when Marketo answered with an error, so nothing ran."""
    if isinstance(error, MalformedResponseError) or (
        isinstance(error, MarketoTransientError) and error.code is None
    ):
        return UNCERTAIN
    return FAILED


# --- the op ----------------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    batch_index: int
    lead_ids: list[int]
    status: str
    code: str | None = None
    message: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "batch": self.batch_index,
            "people": len(self.lead_ids),
            "first_lead_id": self.lead_ids[0] if self.lead_ids else None,
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }


class _Runner:
    """One execution of an action: validated inputs in, batches out, every outcome logged before the next."""

    def __init__(
        self,
        context: dg.OpExecutionContext,
        action: ActionSettings,
        campaign_id: int,
        key: str,
        fp: str,
        log: ActionLog,
    ) -> None:
        self.context, self.action, self.campaign_id = context, action, campaign_id
        self.key, self.fp, self.log = key, fp, log
        self.results: list[BatchResult] = []

    def record(
        self,
        batch_index: int,
        lead_ids: list[int],
        status: str,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        self.log.append(
            {
                "run_id": self.context.run_id,
                "idempotency_key": self.key,
                "action": self.action.name,
                "kind": self.action.kind,
                "campaign_id": self.campaign_id,
                "batch_index": batch_index,
                "lead_ids": lead_ids,
                "status": status,
                "code": code,
                "message": message,
                "fingerprint": self.fp,
                "at": datetime.now(UTC).replace(microsecond=0),
            }
        )
        if status != SENDING:
            self.results.append(BatchResult(batch_index, lead_ids, status, code, message))

    def send(self, batch_index: int, lead_ids: list[int], call: Any) -> bool:
        self.record(batch_index, lead_ids, SENDING)
        try:
            call()
        except MarketoError as error:
            status = outcome_of(error)
            self.record(batch_index, lead_ids, status, error.code, error.marketo_message or str(error))
            self.context.log.warning(
                f"action {self.action.name!r} batch {batch_index} ({len(lead_ids)} people, "
                f"first lead {lead_ids[0] if lead_ids else '-'}): {status}: {error}"
            )
            return False
        self.record(batch_index, lead_ids, SUCCEEDED)
        return True


def _fail(description: str, metadata: dict[str, Any] | None = None) -> dg.Failure:
    return dg.Failure(description=description, metadata=metadata or {}, allow_retries=False)


def execute_action(
    context: dg.OpExecutionContext,
    settings: MolequleSettings,
    config: MarketoActionConfig,
    marketo: MarketoResource,
    lake: LakeResource,
) -> None:
    try:
        action = settings.action(config.action)
    except SettingsError as error:
        raise _fail(f"action: {error}") from None
    now = datetime.now(UTC)
    try:
        check_targets(action, config)
        tokens = validate_tokens(action, config.tokens)
        run_at = parse_run_at(config.run_at, now) if action.kind == "schedule" else None
        lead_ids = resolve_lead_ids(lake.lake, config.lead_ids, config.unified_ids)
        client = marketo.client
        ref = action.campaign
        found = (
            client.smart_campaign(ref.id)
            if ref.id is not None
            else client.smart_campaign_by_name(ref.name or "")
        )
        campaign_id = check_campaign(action, found)
    except ActionInputError as error:
        raise _fail(f"action {action.name!r} was not run: {error}", {"errors": error.errors}) from None

    key = config.idempotency_key or context.run.root_run_id or context.run_id
    fp = fingerprint(action, campaign_id, tokens, run_at)
    log = ActionLog(lake.lake)
    before = progress(log.entries(key, action.name))
    if before.fingerprints and fp not in before.fingerprints:
        raise _fail(
            f"idempotency_key {key!r} was already used for action {action.name!r} with different tokens "
            "or run_at; use a new key for a different request"
        )
    runner = _Runner(context, action, campaign_id, key, fp, log)
    if action.kind == "schedule":
        skipped = _schedule(runner, before, config, tokens, run_at, client)
    else:
        skipped = _trigger(runner, before, config, lead_ids, tokens, client)
    _report(context, runner, action, campaign_id, key, skipped, len(lead_ids))


def _trigger(
    runner: _Runner,
    before: Progress,
    config: MarketoActionConfig,
    lead_ids: list[int],
    tokens: dict[str, str],
    client: Any,
) -> dict[str, int]:
    held = set() if config.resend_uncertain else set(before.uncertain)
    pending = [i for i in lead_ids if i not in before.done and i not in held]
    consecutive_failures = 0
    for index, batch in enumerate(batches(pending)):
        if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            runner.results.append(
                BatchResult(
                    index,
                    batch,
                    "not_sent",
                    None,
                    f"not sent after {MAX_CONSECUTIVE_FAILURES} failed batches in a row",
                )
            )
            continue
        ok = runner.send(index, batch, lambda b=batch: client.request_campaign(runner.campaign_id, b, tokens))
        consecutive_failures = 0 if ok else consecutive_failures + 1
    return {
        "already_sent": sum(1 for i in lead_ids if i in before.done),
        "held_uncertain": sum(1 for i in lead_ids if i in held and i not in before.done),
    }


def _schedule(
    runner: _Runner,
    before: Progress,
    config: MarketoActionConfig,
    tokens: dict[str, str],
    run_at: datetime | None,
    client: Any,
) -> dict[str, int]:
    if before.scheduled:
        return {"already_sent": 1, "held_uncertain": 0}
    if before.schedule_uncertain and not config.resend_uncertain:
        return {"already_sent": 0, "held_uncertain": 1}
    runner.send(0, [], lambda: client.schedule_campaign(runner.campaign_id, run_at=run_at, tokens=tokens))
    return {"already_sent": 0, "held_uncertain": 0}


def _report(
    context: dg.OpExecutionContext,
    runner: _Runner,
    action: ActionSettings,
    campaign_id: int,
    key: str,
    skipped: dict[str, int],
    people: int,
) -> None:
    results = runner.results
    sent = [r for r in results if r.status == SUCCEEDED]
    bad = [r for r in results if r.status != SUCCEEDED]
    metadata: dict[str, Any] = {
        "action": action.name,
        "kind": action.kind,
        "campaign_id": campaign_id,
        "idempotency_key": key,
        "people": people,
        "people_sent": sum(len(r.lead_ids) for r in sent),
        "people_already_sent": skipped["already_sent"],
        "people_held_uncertain": skipped["held_uncertain"],
        "batches_sent": len(sent),
        "batches_not_succeeded": len(bad),
        "batches": dg.MetadataValue.json([r.summary() for r in results]),
    }
    if bad:
        lines = [
            f"batch {r.batch_index} ({len(r.lead_ids)} people, first lead "
            f"{r.lead_ids[0] if r.lead_ids else '-'}): {r.status}"
            + (f", Marketo code {r.code}: {r.message}" if r.code else (f": {r.message}" if r.message else ""))
            for r in bad
        ]
        raise _fail(
            f"action {action.name!r}: {len(bad)} of {len(results)} batch(es) did not succeed; "
            f"re-execute the run (or relaunch with idempotency_key {key!r}) to send only those: "
            + "; ".join(lines),
            metadata,
        )
    if skipped["held_uncertain"]:
        raise _fail(
            f"action {action.name!r}: {skipped['held_uncertain']} people were held back because an "
            "earlier attempt may have reached Marketo; check in Marketo, then relaunch with "
            "resend_uncertain: true to send them",
            metadata,
        )
    context.add_output_metadata(metadata)


# --- job -------------------------------------------------------------------------------------------------
def default_action_config(settings: MolequleSettings) -> dg.RunConfig | None:
    """Opens the launchpad pre-filled with the first configured action and its tokens."""
    if not settings.actions:
        return None
    first = settings.actions[0]
    config = MarketoActionConfig(action=first.name, tokens={t.name: "" for t in first.tokens})
    return dg.RunConfig(ops={ACTION_OP: config})


def build_action_job(settings: MolequleSettings) -> dg.JobDefinition:
    described = "; ".join(f"{a.name} ({a.kind})" for a in settings.actions) or "none configured"

    @dg.op(
        name=ACTION_OP,
        pool=MARKETO_POOL,
        tags={"molequle/kind": "action"},
        description=f"Run one configured Marketo action. Actions: {described}.",
    )
    def run_marketo_action(
        context: dg.OpExecutionContext,
        config: MarketoActionConfig,
        marketo: MarketoResource,
        lake: LakeResource,
    ) -> None:
        execute_action(context, settings, config, marketo, lake)

    @dg.job(
        name=ACTION_JOB,
        config=default_action_config(settings),
        tags={"molequle/kind": "action"},
        description="Trigger or schedule a Marketo smart campaign configured in the settings' actions, "
        "for people by lead id or unified id. Safe to re-execute: batches that succeeded are not resent.",
        metadata={"owners": OWNERS},
    )
    def run_marketo_action_job() -> None:
        run_marketo_action()

    return run_marketo_action_job
