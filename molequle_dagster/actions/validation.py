"""Checks that run before anything is sent: token values, run_at, the targets and the campaign itself.

These are what the config schema cannot express (lengths, formats, an empty required value, time, people,
Marketo's view of the campaign); names, types and required keys are Dagster's to check. Every problem is
an `ActionInputError` whose lines each start with the field they are about.
"""

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from molequle_dagster.actions.config import ActionRequest
from molequle_dagster.settings import ActionSettings, TokenSpec

SCHEDULE_MIN_DELAY = timedelta(minutes=5)  # Marketo refuses an earlier runAt (1042)
SCHEDULE_MAX_AHEAD = timedelta(days=730)
SHOWN_IDS = 10  # how many ids an error message lists


class ActionInputError(ValueError):
    """Bad action input; `errors` holds one "field: problem" line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


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
        if isinstance(value, float):  # Dagster's Float makes 3 in the YAML 3.0; the program shows 3
            return str(int(value)) if value.is_integer() else repr(value)
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


def validate_tokens(
    action: ActionSettings, values: Mapping[str, Any], config_names: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Check token values against the action's definitions; returns {bare name: text} to send.

    Unknown names, missing required ones, wrong types and over-long values are all reported at once.
    `config_names` (token name -> run config key) makes each message name the key the user edits.
    """
    specs = {t.name: t for t in action.tokens}
    names = config_names or {}

    def label(name: str) -> str:
        key = names.get(name)
        return f"tokens.{key} ({{{{my.{name}}}}})" if key and key != name else f"tokens.{name}"

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
                    f"{label(name)}: required by action {action.name!r} (a {spec.type} of at most "
                    f"{spec.max_length} characters)"
                )
            continue  # an empty optional token keeps the program's value
        try:
            text = _token_text(spec, value)
        except ValueError as error:
            errors.append(f"{label(name)}: {error}")
            continue
        if len(text) > spec.max_length:
            errors.append(f"{label(name)}: at most {spec.max_length} characters, got {len(text)}")
            continue
        send[name] = text
    if errors:
        raise ActionInputError(errors)
    return send


def parse_run_at(value: str | None, now: datetime) -> datetime | None:
    """A schedule's runAt in UTC, or None for Marketo's default (about 5 minutes after the call)."""
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


def check_targets(action: ActionSettings, request: ActionRequest) -> None:
    """Triggers need at least one person, by positive lead id or unified id.

    Who takes people at all is the config schema's business: schedule actions have no lead_ids or
    unified_ids (a batch campaign selects its own people) and triggers have no run_at.
    """
    if action.kind == "schedule":
        return
    if not request.lead_ids and not request.unified_ids:
        raise ActionInputError(["lead_ids/unified_ids: give at least one person to trigger the campaign for"])
    bad = [i for i in request.lead_ids if i < 1]
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
