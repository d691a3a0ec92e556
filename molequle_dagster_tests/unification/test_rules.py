"""Bad rules fail early with messages naming the rule, the field and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from molequle_dagster.settings import (
    MatchKey,
    MatchRule,
    SettingsError,
    default_settings_path,
    load_settings,
    parse_settings,
)
from molequle_dagster.unification import validate_rules

PEOPLE_COLUMNS = {"id", "email", "firstName", "lastName", "company", "externalCompanyId", "title", "country",
                  "leadScore", "createdAt", "updatedAt"}
ACCOUNT_COLUMNS = {"account_id", "company", "website", "billingCountry", "industry", "numberOfEmployees"}


def test_default_settings_rules_fit_the_synced_columns() -> None:
    unification = load_settings(default_settings_path()).unification
    validate_rules(unification.people, PEOPLE_COLUMNS, "person")
    validate_rules(unification.accounts, ACCOUNT_COLUMNS, "account")


def test_unknown_field_names_rule_index_field_and_allowed_columns() -> None:
    rules = [
        MatchRule(name="same_email", keys=[MatchKey(field="email", normalize=["email"])]),
        MatchRule(name="same_phone", keys=[MatchKey(field="phone", normalize=["digits"])]),
    ]
    with pytest.raises(ValueError) as error:
        validate_rules(rules, PEOPLE_COLUMNS, "person")
    message = str(error.value)
    assert message.startswith("unification.people[1].keys[0].field: unknown column 'phone'")
    assert "rule 'same_phone'" in message
    assert "allowed columns: company, country, createdAt" in message


def test_duplicate_rule_name_is_refused_naming_both_rules() -> None:
    rule = MatchRule(name="same_domain", keys=[MatchKey(field="website", normalize=["domain"])])
    with pytest.raises(ValueError, match=r"unification.accounts\[1\].name: duplicate rule name 'same_domain' "
                                         r"\(also unification.accounts\[0\]\)"):
        validate_rules([rule, rule], ACCOUNT_COLUMNS, "account")


def test_rule_without_keys_built_in_code() -> None:
    empty = MatchRule.model_construct(name="nothing", keys=[])
    with pytest.raises(ValueError, match=r"unification.people\[0\].keys: rule 'nothing' has no keys"):
        validate_rules([empty], PEOPLE_COLUMNS, "person")


def test_unknown_normalizer_built_in_code() -> None:
    key = MatchKey.model_construct(field="email", normalize=["email", "soundex"])
    rule = MatchRule.model_construct(name="fuzzy", keys=[key])
    with pytest.raises(ValueError, match=r"keys\[0\].normalize\[1\]: unknown normalizer 'soundex'.*allowed: "
                                         r"company_name, digits, domain"):
        validate_rules([rule], PEOPLE_COLUMNS, "person")


def test_unknown_entity_is_refused() -> None:
    with pytest.raises(ValueError, match="entity: expected 'person' or 'account', got 'lead'"):
        validate_rules([], PEOPLE_COLUMNS, "lead")


def _settings_with_people_rules(rules: list[dict[str, object]]) -> dict[str, object]:
    data = yaml.safe_load(default_settings_path().read_text())
    data["unification"]["people"] = rules
    return data


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([{"name": "r", "keys": []}], r"unification.people\[0\].keys: List should have at least 1 item"),
        ([{"name": "r", "keys": [{"field": "email", "normalize": ["soundex"]}]}],
         r"unification.people\[0\].keys\[0\].normalize\[0\]: Input should be 'trim_case', 'email'"),
        ([{"name": "r", "keys": [{"field": "email"}]}, {"name": "r", "keys": [{"field": "email"}]}],
         r"unification.people: duplicate rule name 'r'"),
        ([{"name": "Bad Name", "keys": [{"field": "email"}]}],
         r"unification.people\[0\].name: String should match"),
    ],
)
def test_settings_file_rejects_bad_rules(rules: list[dict[str, object]], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        parse_settings(_settings_with_people_rules(rules))
