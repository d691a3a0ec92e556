"""Extension settings: the packaged defaults load, and each kind of bad input fails with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from molequle_dagster.settings import (
    SettingsError,
    default_settings_path,
    load_settings,
    parse_settings,
    parse_settings_text,
)


@pytest.fixture
def base() -> dict:
    return yaml.safe_load(default_settings_path().read_text())


def _error(data: dict) -> str:
    with pytest.raises(SettingsError) as caught:
        parse_settings(data, "test.yaml")
    return str(caught.value)


def test_packaged_defaults_load_and_resolve_activity_type_ids() -> None:
    settings = load_settings(default_settings_path())
    assert settings.activities.type_ids == [10, 11, 8, 27, 6, 7, 46, 2, 1, 3, 22]
    assert settings.activities.group_of()[46] == "moments"
    assert settings.sync.history_days == 730 and settings.sync.cron_schedule == "*/10 * * * *"
    assert settings.people.export_fields[:4] == ["id", "email", "createdAt", "updatedAt"]


def test_omitted_activity_types_default_to_the_eleven_product_types(base: dict) -> None:
    del base["activities"]
    settings = parse_settings(base)
    assert len(settings.activities.types) == 11
    assert {t.type_group for t in settings.activities.types} == {
        "email",
        "moments",
        "forms",
        "web",
        "scoring",
    }


def test_unknown_key_names_the_path_and_the_allowed_keys(base: dict) -> None:
    base["people"]["smart_lsit"] = {"name": "x"}
    message = _error(base)
    assert "people.smart_lsit: unknown key" in message
    assert "allowed keys here: attributes, smart_list" in message


def test_wrong_type_names_the_path_and_the_value(base: dict) -> None:
    base["sync"]["history_days"] = "two years"
    message = _error(base)
    assert "sync.history_days" in message and "'two years'" in message and "integer" in message


def test_out_of_range_value(base: dict) -> None:
    base["marketo"]["pacing"]["calls_per_20s"] = 500
    message = _error(base)
    assert "marketo.pacing.calls_per_20s" in message and "100" in message and "500" in message


def test_sync_interval_must_keep_the_30_minute_promise(base: dict) -> None:
    base["sync"]["interval_minutes"] = 60
    assert "sync.interval_minutes" in _error(base) and "30 minutes" in _error(base)
    base["sync"]["interval_minutes"] = 7
    assert "must be one of" in _error(base)


def test_unknown_activity_type_name_lists_the_known_names(base: dict) -> None:
    base["activities"]["types"].append({"name": "Email Opne"})
    message = _error(base)
    assert "activities.types[11]" in message
    assert "unknown activity type name 'Email Opne'" in message and "Email Open" in message


def test_custom_activity_type_needs_an_id(base: dict) -> None:
    base["activities"]["types"].append({"name": "Webinar Attended", "id": 100001, "group": "events"})
    settings = parse_settings(base)
    assert settings.activities.group_of()[100001] == "events"


def test_duplicate_action_name_is_refused(base: dict) -> None:
    base["actions"].append(dict(base["actions"][0]))
    message = _error(base)
    assert "actions" in message and "duplicate action name 'welcome_sequence'" in message


def test_bad_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    broken = tmp_path / "s.yaml"
    broken.write_text("marketo: [unclosed")
    with pytest.raises(SettingsError, match=r"invalid YAML in .*s\.yaml at line 1, column 19: expected ','"):
        load_settings(broken)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(default_settings_path().read_bytes() + "\n# Größe\n".encode("latin-1"))
    with pytest.raises(SettingsError) as caught:
        load_settings(latin1)
    message = str(caught.value)
    assert str(latin1) in message and "not UTF-8" in message and "byte 0xf6" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained traceback


@pytest.mark.parametrize("value, expected", [
    (True, "valid integer"), ("30", "valid integer"), (30.0, "valid integer"), (None, "valid integer"),
])
def test_integers_are_strict(base: dict, value: object, expected: str) -> None:
    base["sync"]["history_days"] = value
    message = _error(base)
    assert f"sync.history_days: Input should be a {expected} (got {value!r})" in message


@pytest.mark.parametrize("path, value, expected", [
    (("marketo", "pacing", "calls_per_20s"), True, "valid integer"),
    (("marketo", "bulk", "max_queued_jobs"), "4", "valid integer"),
    (("marketo", "bulk", "max_queued_jobs"), 11, "less than or equal to 10"),
    (("marketo", "timeout_s"), "30", "valid number"),
    (("marketo", "bulk", "poll_interval_s"), False, "valid number"),
    (("sync", "programs"), "yes", "valid boolean"),
    (("accounts", "companies"), 1, "valid boolean"),
])
def test_numbers_and_booleans_are_strict_everywhere(base: dict, path: tuple, value: object,
                                                   expected: str) -> None:
    node = base
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    message = _error(base)
    assert f"{'.'.join(path)}: Input should be" in message and expected in message and repr(value) in message


def test_a_removed_marketo_key_lists_the_allowed_ones(base: dict) -> None:
    base["marketo"]["bulk"]["max_processing_jobs"] = 2
    message = _error(base)
    assert "marketo.bulk.max_processing_jobs: unknown key" in message and "max_queued_jobs" in message


def test_the_marketo_section_is_the_clients_own_config(base: dict) -> None:
    from molequle_dagster.marketo.config import MarketoConnection

    settings = parse_settings(base)
    assert isinstance(settings.marketo, MarketoConnection)
    assert settings.marketo.bulk.max_queued_jobs == 4 and settings.marketo.pacing.calls_per_20s == 50


def test_smart_list_needs_exactly_one_of_name_or_id(base: dict) -> None:
    base["people"]["smart_list"] = {"name": "A", "id": 3}
    assert "people.smart_list" in _error(base) and "exactly one" in _error(base)


def test_unification_rule_on_a_column_that_is_not_synced(base: dict) -> None:
    base["unification"]["people"].append({"name": "same_phone", "keys": [{"field": "phone"}]})
    message = _error(base)
    assert "unification.people[2].keys[0].field: unknown column 'phone'" in message
    assert "allowed columns:" in message and "email" in message


def test_unification_rule_with_an_unknown_normalizer(base: dict) -> None:
    base["unification"]["accounts"][0]["keys"][0]["normalize"] = ["soundex"]
    message = _error(base)
    assert "unification.accounts[0].keys[0].normalize[0]" in message and "soundex" in message


# --- fuzz: no input reaches the user as anything but a SettingsError with a message ----------------------

yaml_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=12) | st.dates())
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=3),
                           max_leaves=10)


def _clear(error: SettingsError) -> None:
    message = str(error)
    assert message.startswith(("invalid Molequle settings", "invalid YAML", "Molequle settings file"))
    if message.startswith("invalid YAML"):
        assert "\n" not in message and "<unicode string>" not in message
    for line in message.splitlines()[1:]:  # one problem per line: `  <key path>: <what is wrong>`
        assert line.startswith("  ") and ": " in line


def _key_paths(data: object, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        paths = []
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths += [path, *_key_paths(value, path)]
        return paths
    return []


@settings(max_examples=150, deadline=None)
@given(data=yaml_values)
def test_any_yaml_structure_loads_or_fails_clearly(data: object) -> None:
    try:
        parse_settings_text(yaml.safe_dump(data), "fuzz.yaml")
    except SettingsError as error:
        _clear(error)


@settings(max_examples=200, deadline=None)
@given(choice=st.data(), value=yaml_values)
def test_a_wrong_value_anywhere_names_its_key_path(choice: st.DataObject, value: object) -> None:
    base = yaml.safe_load(default_settings_path().read_text())
    path = choice.draw(st.sampled_from(_key_paths(base)))
    node = base
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    try:
        parse_settings(base, "fuzz.yaml")
    except SettingsError as error:
        _clear(error)
        # The message names the changed key, or a key inside it, or what depends on it.
        assert any(p.split("[")[0] in str(error) for p in (path, *parents[:1])) or "unification" in str(error)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=300))
def test_any_bytes_in_a_settings_file_fail_clearly(tmp_path_factory: pytest.TempPathFactory,
                                                   raw: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "settings.yaml"
    path.write_bytes(raw)
    try:
        load_settings(path)
    except SettingsError as error:
        _clear(error)
        assert str(path) in str(error) or "fuzz" in str(error) or "settings" in str(error)


def test_environment_overrides_replace_their_keys_and_are_named_in_errors(base: dict, monkeypatch) -> None:
    monkeypatch.setenv("MARKETO_BASE_URL", "https://123-ABC-456.mktorest.com")
    monkeypatch.setenv("MOLEQULE_LAKE_URI", "s3://bucket/lake")
    settings = parse_settings(base, "test.yaml")
    assert settings.marketo.base_url == "https://123-ABC-456.mktorest.com"
    assert settings.storage.lake_uri == "s3://bucket/lake"
    monkeypatch.setenv("MARKETO_BASE_URL", "ftp://nowhere")
    message = _error(base)
    assert "$MARKETO_BASE_URL" in message and "marketo.base_url" in message


def _settings_paths(model: type, prefix: str = "") -> list[str]:
    """Every leaf key of the settings model (a nested model's fields; lists and refs are leaves)."""
    from pydantic import BaseModel

    paths = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel) and kind.__name__ != "SmartListRef":
            paths += _settings_paths(kind, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def test_every_settings_key_is_in_the_readme_reference() -> None:
    """A row's first cell names keys: the first one in full, the others relative to its parent."""
    from molequle_dagster.settings import MolequleSettings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Settings reference", 1)[1].split("\n## ", 1)[0]
    documented: set[str] = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        keys = [k.strip(" `") for k in row.split("|")[1].split(",")]
        parent = keys[0].rpartition(".")[0]
        documented |= {keys[0], *(f"{parent}.{k}" if parent else k for k in keys[1:])}
    missing = [p for p in _settings_paths(MolequleSettings) if p not in documented]
    assert not missing, f"settings keys missing from the README's reference: {missing}"
