"""Cross-check of match rules against the columns that will actually exist (the lead calls this at load).

Pydantic already rejects malformed rules in the settings file; this check adds what only the sync
configuration knows: which columns the people/accounts tables will have. It re-checks the rest too, so
rules built in code (or with `model_construct`) get the same clear messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from molequle_dagster.unification.normalize import NORMALIZERS


# The shape of settings.MatchRule, so that settings.py can call validate_rules at load without this module
# importing settings back.
class MatchKey(Protocol):
    field: str
    normalize: Sequence[str]


class MatchRule(Protocol):
    name: str
    keys: Sequence[MatchKey]

ENTITY_SETTINGS_KEY = {"person": "people", "account": "accounts"}


def validate_rules(rules: Sequence[MatchRule], available_columns: set[str], entity: str) -> None:
    """Raise ValueError naming `unification.<people|accounts>[i]`, the field and what is allowed."""
    if entity not in ENTITY_SETTINGS_KEY:
        raise ValueError(f"entity: expected 'person' or 'account', got {entity!r}")
    section = f"unification.{ENTITY_SETTINGS_KEY[entity]}"
    allowed_columns = ", ".join(sorted(available_columns)) or "(none)"
    seen_names: dict[str, int] = {}
    for index, rule in enumerate(rules):
        where = f"{section}[{index}]"
        if rule.name in seen_names:
            raise ValueError(
                f"{where}.name: duplicate rule name {rule.name!r} (also {section}[{seen_names[rule.name]}]); "
                "each rule needs its own name"
            )
        seen_names[rule.name] = index
        if not rule.keys:
            raise ValueError(f"{where}.keys: rule {rule.name!r} has no keys; expected at least one key")
        for key_index, key in enumerate(rule.keys):
            key_where = f"{where}.keys[{key_index}]"
            if key.field not in available_columns:
                raise ValueError(
                    f"{key_where}.field: unknown column {key.field!r} in rule {rule.name!r}; "
                    f"allowed columns: {allowed_columns}"
                )
            for step_index, step in enumerate(key.normalize):
                if step not in NORMALIZERS:
                    raise ValueError(
                        f"{key_where}.normalize[{step_index}]: unknown normalizer {step!r} in rule "
                        f"{rule.name!r}; allowed: {', '.join(sorted(NORMALIZERS))}"
                    )
