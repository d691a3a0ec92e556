"""The Marketo extension settings: one YAML file, validated when definitions load.

What the product calls "the Marketo extension settings" in the portal is this file. Everything the sync,
unification, actions and write-back do is driven from it. Bad settings fail at load with a message naming
the key path, the bad value and what is allowed; secrets are only *named* here (environment variable
names) and read when a run needs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from molequle_dagster.marketo.config import MarketoConnection

SETTINGS_ENV_VAR = "MOLEQULE_SETTINGS"
DEFAULT_SETTINGS_RESOURCE = "default_settings.yaml"
# The only environment overrides of settings keys (documented in the README): read here and nowhere else,
# so every module, the CLI included, sees one base URL and one lake.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "MARKETO_BASE_URL": ("marketo", "base_url"),
    "MOLEQULE_LAKE_URI": ("storage", "lake_uri"),
}


class SettingsError(ValueError):
    """Raised for settings that cannot be used; the message names key path, value and what is allowed."""


# --- Marketo activity types --------------------------------------------------------------------------
# Default Marketo activity type ids (docs/marketo.md §8.2); match by id, never by name. Each entry:
# Molequle's label -> (Marketo's types.json name, id, default group, Marketo retention in days).
# Retention: 90 days for high-volume types, 25 months (~760 days) for the rest (docs/marketo.md §8.3).
RETENTION_90_DAYS = 90
RETENTION_25_MONTHS = 760


class KnownActivityType(BaseModel):
    model_config = ConfigDict(frozen=True)
    label: str
    marketo_name: str
    id: int
    group: str
    retention_days: int


KNOWN_ACTIVITY_TYPES: tuple[KnownActivityType, ...] = tuple(
    KnownActivityType(label=label, marketo_name=mname, id=tid, group=group, retention_days=days)
    for label, mname, tid, group, days in [
        ("Web Page Visit", "Visit Webpage", 1, "web", RETENTION_90_DAYS),
        ("Fill Out Form", "Fill Out Form", 2, "forms", RETENTION_25_MONTHS),
        ("Web Page Click", "Click Link", 3, "web", RETENTION_90_DAYS),
        ("Email Sent", "Send Email", 6, "email", RETENTION_90_DAYS),
        ("Email Delivered", "Email Delivered", 7, "email", RETENTION_90_DAYS),
        ("Email Bounce Hard", "Email Bounced", 8, "email", RETENTION_25_MONTHS),
        ("Unsubscribe Email", "Unsubscribe Email", 9, "email", RETENTION_25_MONTHS),
        ("Email Open", "Open Email", 10, "email", RETENTION_25_MONTHS),
        ("Email Click", "Click Email", 11, "email", RETENTION_25_MONTHS),
        ("New Lead", "New Lead", 12, "lifecycle", 100_000),
        ("Change Data Value", "Change Data Value", 13, "lifecycle", RETENTION_90_DAYS),
        ("Score Change", "Change Score", 22, "scoring", RETENTION_90_DAYS),
        ("Add to List", "Add to List", 24, "lists", RETENTION_90_DAYS),
        ("Remove from List", "Remove from List", 25, "lists", RETENTION_25_MONTHS),
        ("Email Bounce Soft", "Email Bounced Soft", 27, "email", RETENTION_25_MONTHS),
        ("Merge Leads", "Merge Leads", 32, "lifecycle", RETENTION_25_MONTHS),
        ("Interesting Moment", "Interesting Moment", 46, "moments", RETENTION_25_MONTHS),
        ("Request Campaign", "Request Campaign", 47, "campaigns", RETENTION_90_DAYS),
        (
            "Change Status in Progression",
            "Change Status in Progression",
            104,
            "programs",
            RETENTION_25_MONTHS,
        ),
        ("Add to Nurture", "Add to Nurture", 113, "programs", RETENTION_25_MONTHS),
        ("Change Program Member Data", "Change Program Member Data", 123, "programs", RETENTION_25_MONTHS),
    ]
)
_TYPES_BY_NAME = {t.label.casefold(): t for t in KNOWN_ACTIVITY_TYPES} | {
    t.marketo_name.casefold(): t for t in KNOWN_ACTIVITY_TYPES
}
_TYPES_BY_ID = {t.id: t for t in KNOWN_ACTIVITY_TYPES}
DELETE_LEAD_TYPE_ID = 37  # bulk activity export refuses it; deletions come from Get Deleted Leads

DEFAULT_ACTIVITY_TYPE_LABELS = (
    "Email Open",
    "Email Click",
    "Email Bounce Hard",
    "Email Bounce Soft",
    "Email Sent",
    "Email Delivered",
    "Interesting Moment",
    "Fill Out Form",
    "Web Page Visit",
    "Web Page Click",
    "Score Change",
)


def known_activity_type(name: str) -> KnownActivityType | None:
    return _TYPES_BY_NAME.get(name.strip().casefold())


# --- building blocks ---------------------------------------------------------------------------------
class _Strict(BaseModel):
    """Unknown keys are errors (a typo must never be silently ignored) and types are strict: `true` is no
    number and `"30"` no integer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
FieldName = Annotated[str, Field(pattern=_FIELD_NAME.pattern, description="a Marketo REST API field name")]


def _unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}; each must appear once")
        seen.add(value)


# --- marketo connection ------------------------------------------------------------------------------
# Declared once, in the client's own config module: the settings file, the Dagster resource and the client
# share its defaults, ranges and descriptions.


# --- people, accounts --------------------------------------------------------------------------------
class SmartListRef(_Strict):
    """The smart list whose members make up the initial people sync (by name or id)."""

    name: str | None = Field(None, min_length=1)
    id: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> SmartListRef:
        if (self.name is None) == (self.id is None):
            raise ValueError("give exactly one of 'name' or 'id'")
        return self


REQUIRED_PERSON_FIELDS = ("id", "email", "createdAt", "updatedAt")


class PeopleSettings(_Strict):
    smart_list: SmartListRef
    sweep_start: date = Field(
        date(2006, 1, 1),
        strict=False,  # YAML gives a date for 2006-01-01; a quoted "2006-01-01" is accepted too
        description="first day of the createdAt sweeps used when the instance refuses smart-list filters "
        "(1035); the default predates any Marketo instance, so every lead is covered",
    )
    attributes: list[FieldName] = Field(
        default_factory=lambda: ["firstName", "lastName", "title", "company", "externalCompanyId"],
        description="lead fields to sync besides id, email, createdAt, updatedAt",
    )

    watched_fields: list[FieldName] = Field(
        default_factory=list,
        description="lead fields the smart list's rules use (e.g. unsubscribed): a tick watches their "
        "changes too, so a person who joins the list shows within a tick, not at the daily refresh",
    )

    @field_validator("attributes", "watched_fields")
    @classmethod
    def _unique_attributes(cls, value: list[str]) -> list[str]:
        _unique(value, "attribute")
        return value

    @property
    def change_fields(self) -> list[str]:
        """Fields whose changes a tick reads (Get Lead Changes reports only the fields it is asked for)."""
        fields = [f for f in self.export_fields if f not in ("id", "createdAt", "updatedAt")]
        return list(dict.fromkeys([*fields, *self.watched_fields])) or ["email"]

    # Write-back target fields, set by MolequleSettings: the sync must read back what we push.
    _write_back_fields: tuple[str, ...] = PrivateAttr(default=())

    @property
    def export_fields(self) -> list[str]:
        extra = [a for a in self.attributes if a not in REQUIRED_PERSON_FIELDS]
        written = [f for f in self._write_back_fields if f not in REQUIRED_PERSON_FIELDS and f not in extra]
        return [*REQUIRED_PERSON_FIELDS, *extra, *written]


class AccountSettings(_Strict):
    companies: bool = True
    company_attributes: list[FieldName] = Field(
        default_factory=lambda: ["company", "website", "industry", "numberOfEmployees", "billingCountry"]
    )
    named_accounts: bool = False
    named_account_attributes: list[FieldName] = Field(
        default_factory=lambda: ["name", "domainName", "industry", "country", "numberOfEmployees"]
    )

    @field_validator("company_attributes", "named_account_attributes")
    @classmethod
    def _unique_attributes(cls, value: list[str]) -> list[str]:
        _unique(value, "attribute")
        return value


# --- activities --------------------------------------------------------------------------------------
class ActivityTypeSetting(_Strict):
    """One synced activity type. Known names resolve to Marketo's id; custom types give `id` explicitly."""

    name: str = Field(min_length=1)
    id: int | None = Field(None, ge=1)
    group: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    retention_days: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _resolve(self) -> ActivityTypeSetting:
        known = known_activity_type(self.name)
        if self.id is None and known is None:
            allowed = ", ".join(t.label for t in KNOWN_ACTIVITY_TYPES)
            raise ValueError(
                f"unknown activity type name {self.name!r}; known names: {allowed} "
                "(or Marketo's own names); for a custom type give its 'id' too"
            )
        if self.id == DELETE_LEAD_TYPE_ID:
            raise ValueError("Delete Lead (37) cannot be exported; deletions are synced with the people")
        if known is not None and self.id is not None and self.id != known.id:
            raise ValueError(f"{self.name!r} is Marketo type {known.id}, not {self.id}")
        return self

    @property
    def type_id(self) -> int:
        if self.id is not None:
            return self.id
        known = known_activity_type(self.name)
        assert known is not None  # guaranteed by validation
        return known.id

    @property
    def type_group(self) -> str:
        if self.group:
            return self.group
        known = _TYPES_BY_ID.get(self.type_id)
        return known.group if known else "custom"

    @property
    def retention(self) -> int:
        if self.retention_days is not None:
            return self.retention_days
        known = _TYPES_BY_ID.get(self.type_id)
        return known.retention_days if known else RETENTION_25_MONTHS


def _default_activity_types() -> list[ActivityTypeSetting]:
    return [ActivityTypeSetting(name=label) for label in DEFAULT_ACTIVITY_TYPE_LABELS]


class ActivitySettings(_Strict):
    types: list[ActivityTypeSetting] = Field(default_factory=_default_activity_types, min_length=1)

    @field_validator("types")
    @classmethod
    def _unique_types(cls, value: list[ActivityTypeSetting]) -> list[ActivityTypeSetting]:
        _unique((str(t.type_id) for t in value), "activity type id")
        return value

    @property
    def type_ids(self) -> list[int]:
        return [t.type_id for t in self.types]

    def group_of(self) -> dict[int, str]:
        return {t.type_id: t.type_group for t in self.types}


# --- sync cadence and history ------------------------------------------------------------------------
_ALLOWED_INTERVALS = (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720, 1440)


class SyncSettings(_Strict):
    history_days: int = Field(730, ge=1, le=1130, description="days of history; Marketo keeps ≤ 37 months")
    interval_minutes: int = Field(
        10,
        description="minutes between ticks (the schedule); 10 keeps data within 15 minutes 95% of the time "
        "and never older than 30 (docs/benchmarks.md, freshness)",
    )
    programs: bool = Field(True, description="sync programs, channels and memberships")
    automation: bool = Field(
        False,
        description="start the schedules and the onboarding sensor running by default (production: the "
        "daemon alone then runs the first sync, the history and every tick); off for local development",
    )
    late_minutes: int = Field(
        5,
        ge=0,
        le=120,
        description="each tick re-reads this much before the previous one: Marketo can make records "
        "visible a little after their timestamp [UNCONFIRMED how late]; the daily close re-exports the "
        "whole previous day anyway",
    )
    rest_pages: int = Field(
        10,
        ge=1,
        le=200,
        description="REST pages (300 records each) a tick may read per feed before it switches to a bulk "
        "export for the rest of the window (big deltas are cheaper in calls through bulk)",
    )

    @field_validator("interval_minutes")
    @classmethod
    def _cron_friendly(cls, value: int) -> int:
        if value not in _ALLOWED_INTERVALS:
            raise ValueError(f"must be one of {list(_ALLOWED_INTERVALS)} so it maps onto a cron schedule")
        if value > 30:
            # The product promise: nothing shown is older than 30 minutes.
            raise ValueError("must be at most 30: Molequle promises data no older than 30 minutes")
        return value

    @property
    def cron_schedule(self) -> str:
        return f"*/{self.interval_minutes} * * * *"


class BudgetSettings(_Strict):
    """Our share of Marketo's daily quotas, shared with the customer's other integrations."""

    daily_calls: int = Field(
        50_000, ge=1_000, le=10_000_000, description="the subscription's daily call quota"
    )
    call_share: float = Field(
        0.5, gt=0, le=1, description="share of the daily call quota the sync may use (the rest is left "
        "for the customer's other integrations)"
    )
    daily_export_mb: int = Field(
        500, ge=10, le=1_000_000, description="the subscription's daily bulk export MB"
    )
    export_share: float = Field(
        0.5, gt=0, le=1, description="share of the daily export bytes the sync may use"
    )
    tick_reserve: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="share of our budget kept for ticks: history and reconciliation are deferred before "
        "they would eat into it",
    )

    @property
    def calls_limit(self) -> int:
        return int(self.daily_calls * self.call_share)

    @property
    def export_bytes_limit(self) -> int:
        return int(self.daily_export_mb * 1024 * 1024 * self.export_share)


class ReconciliationSettings(_Strict):
    """Periodic full re-reads that catch what change feeds cannot show; spread over days, budgeted."""

    memberships_days: int = Field(
        7, ge=1, le=90, description="every program's members are re-exported once per this many days"
    )
    accounts_days: int = Field(
        1, ge=1, le=90, description="every company and named account is re-read once per this many days"
    )


# --- unification -------------------------------------------------------------------------------------
# Columns of the current `accounts` table that account rules can match on (companies and named accounts
# are mapped onto these names by assets/accounts.py, which checks it builds exactly these).
ACCOUNT_TABLE_COLUMNS = (
    "account_id",
    "source",
    "company",
    "website",
    "industry",
    "numberOfEmployees",
    "billingCountry",
    "domain",
)
Normalizer = Literal["trim_case", "email", "email_domain", "url_domain", "domain", "company_name", "digits"]


class MatchKey(_Strict):
    field: FieldName
    normalize: list[Normalizer] = Field(default_factory=lambda: ["trim_case"])


class MatchRule(_Strict):
    """Records whose normalized key values are all equal (and non-empty) are the same entity."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    keys: list[MatchKey] = Field(min_length=1)


class UnificationSettings(_Strict):
    people: list[MatchRule] = Field(
        default_factory=lambda: [
            MatchRule(name="same_email", keys=[MatchKey(field="email", normalize=["email"])]),
        ]
    )
    accounts: list[MatchRule] = Field(
        default_factory=lambda: [
            MatchRule(name="same_domain", keys=[MatchKey(field="website", normalize=["domain"])]),
        ]
    )

    @field_validator("people", "accounts")
    @classmethod
    def _unique_rule_names(cls, value: list[MatchRule]) -> list[MatchRule]:
        _unique((r.name for r in value), "rule name")
        return value


# --- actions -----------------------------------------------------------------------------------------
class TokenSpec(_Strict):
    """A program "My Token" an action may send; sent as {{my.<name>}}."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^{}]+$")
    type: Literal["string", "integer", "number", "date", "url"] = "string"
    required: bool = False
    max_length: int = Field(1000, ge=1, le=100_000)
    description: str = ""


class CampaignRef(_Strict):
    id: int | None = Field(None, ge=1)
    name: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> CampaignRef:
        if (self.name is None) == (self.id is None):
            raise ValueError("give exactly one of 'name' or 'id'")
        return self


class ActionSettings(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["trigger", "schedule"] = "trigger"
    campaign: CampaignRef
    tokens: list[TokenSpec] = Field(default_factory=list, max_length=100)
    description: str = ""

    @field_validator("tokens")
    @classmethod
    def _unique_tokens(cls, value: list[TokenSpec]) -> list[TokenSpec]:
        _unique((t.name for t in value), "token name")
        return value


# --- write-back --------------------------------------------------------------------------------------
READ_ONLY_LEAD_FIELDS = frozenset({"id", "createdAt", "updatedAt"})


class WriteBackMapping(_Strict):
    """Push a Molequle column to a Marketo lead field (Sync Leads, updateOnly by id)."""

    source_table: Literal["unified_people", "unified_accounts", "people"] = Field(
        description="lake table holding the value; unified tables are joined to lead ids through their links"
    )
    source_column: FieldName = Field(description="column of source_table, e.g. unified_id")
    marketo_field: FieldName = Field(description="Marketo lead field (REST name) the value is written to")

    @field_validator("marketo_field")
    @classmethod
    def _writable(cls, value: str) -> str:
        if value in READ_ONLY_LEAD_FIELDS:
            raise ValueError(f"{value!r} is read-only in Marketo; choose a writable lead field")
        return value


class WriteBackSettings(_Strict):
    enabled: bool = False
    mappings: list[WriteBackMapping] = Field(default_factory=list)

    @field_validator("mappings")
    @classmethod
    def _unique_targets(cls, value: list[WriteBackMapping]) -> list[WriteBackMapping]:
        _unique((m.marketo_field for m in value), "write-back marketo_field")
        return value


# --- storage -----------------------------------------------------------------------------------------
class StorageSettings(_Strict):
    lake_uri: str = Field(
        ".molequle/lake",
        min_length=1,
        description="local directory or a pyarrow filesystem URI (e.g. s3://bucket/prefix)",
    )


# --- the whole file ----------------------------------------------------------------------------------
class MolequleSettings(_Strict):
    marketo: MarketoConnection
    people: PeopleSettings
    accounts: AccountSettings = AccountSettings()
    activities: ActivitySettings = ActivitySettings()
    sync: SyncSettings = SyncSettings()
    budget: BudgetSettings = BudgetSettings()
    reconciliation: ReconciliationSettings = ReconciliationSettings()
    unification: UnificationSettings = UnificationSettings()
    actions: list[ActionSettings] = Field(default_factory=list)
    write_back: WriteBackSettings = WriteBackSettings()
    storage: StorageSettings = StorageSettings()

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, value: list[ActionSettings]) -> list[ActionSettings]:
        _unique((a.name for a in value), "action name")
        return value

    @model_validator(mode="after")
    def _rules_use_synced_columns(self) -> MolequleSettings:
        """A rule may only match on columns the people/accounts tables will actually have."""
        from molequle_dagster.unification.rules import validate_rules

        validate_rules(self.unification.people, set(self.people.export_fields), "person")
        validate_rules(self.unification.accounts, set(ACCOUNT_TABLE_COLUMNS), "account")
        return self

    @model_validator(mode="after")
    def _read_back_write_back_fields(self) -> MolequleSettings:
        # Private attribute on a frozen model: allowed, and invisible to serialisation.
        if self.write_back.enabled:
            self.people._write_back_fields = tuple(m.marketo_field for m in self.write_back.mappings)
        return self

    def action(self, name: str) -> ActionSettings:
        for action in self.actions:
            if action.name == name:
                return action
        allowed = ", ".join(a.name for a in self.actions) or "(none configured)"
        raise SettingsError(f"actions: no action named {name!r}; configured actions: {allowed}")


# --- loading -----------------------------------------------------------------------------------------
def _loc_to_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in {"function-after", "function-before"} or str(part).startswith("function-"):
            continue
        elif not _PLAIN_KEY.match(str(part)):
            path += f"[{str(part)!r}]"  # a key with spaces, control characters...: shown as written
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at the parent of `loc` (for unknown-key messages)."""
    model: Any = MolequleSettings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return []
    return sorted(getattr(model, "model_fields", {}))


def _format_errors(source: str, error: ValidationError) -> str:
    lines = [f"invalid Molequle settings in {source}:"]
    for item in error.errors():
        loc = tuple(item["loc"])
        path = _loc_to_path(loc)
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(loc))
            lines.append(f"  {path}: unknown key; allowed keys here: {allowed}")
            continue
        message = item["msg"].removeprefix("Value error, ")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"  {path}: {message} (got {shown})")
    return "\n".join(lines)


def with_environment(data: dict[str, Any], source: str) -> tuple[dict[str, Any], str]:
    """The settings with ENV_OVERRIDES applied, and the source named with the variables that were set."""
    used = [name for name in ENV_OVERRIDES if os.environ.get(name, "").strip()]
    if not used:
        return data, source
    merged = dict(data)
    for name in used:
        section, key = ENV_OVERRIDES[name]
        block = merged.get(section)
        merged[section] = {**(block if isinstance(block, dict) else {}), key: os.environ[name].strip()}
    return merged, f"{source} with ${', $'.join(used)}"


def parse_settings(data: Any, source: str = "<settings>") -> MolequleSettings:
    if not isinstance(data, dict):
        raise SettingsError(f"invalid Molequle settings in {source}: expected a mapping at the top level")
    data, source = with_environment(data, source)
    try:
        return MolequleSettings.model_validate(data)
    except ValidationError as error:
        raise SettingsError(_format_errors(source, error)) from None


def default_settings_path() -> Path:
    return Path(str(resources.files("molequle_dagster").joinpath(DEFAULT_SETTINGS_RESOURCE)))


def settings_path() -> Path:
    """$MOLEQULE_SETTINGS if set, else the packaged sandbox defaults."""
    configured = os.environ.get(SETTINGS_ENV_VAR)
    return Path(configured) if configured else default_settings_path()


def load_settings(path: str | os.PathLike[str] | None = None) -> MolequleSettings:
    source = Path(path) if path is not None else settings_path()
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise SettingsError(f"cannot read Molequle settings file {source}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise SettingsError(
            f"Molequle settings file {source} is not UTF-8 text: byte 0x{raw[error.start]:02x} at line "
            f"{line} (offset {error.start}) is not valid UTF-8; save the file as UTF-8"
        ) from None
    return parse_settings_text(text, str(source))


def _yaml_problem(error: yaml.YAMLError) -> str:
    """` at line L, column C: problem (context)` in one line; PyYAML's own text names "<unicode string>"."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    return f"{where}: {problem}" + (f" ({context})" if context else "")


def parse_settings_text(text: str, source: str = "<settings>") -> MolequleSettings:
    """Settings from YAML text (what `load_settings` reads from a file)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = _yaml_problem(error)
        raise SettingsError(f"invalid YAML in Molequle settings file {source}{problem}") from None
    except RecursionError:
        raise SettingsError(f"invalid YAML in Molequle settings file {source}: nested too deeply") from None
    return parse_settings(data, source)
