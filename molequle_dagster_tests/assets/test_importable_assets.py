"""Assets are importable by name and materialize alone (issue 18): no factory, no whole graph, only the
asset and the project's resources, against the sandbox over HTTP."""

from __future__ import annotations

import dagster as dg
import pytest

from molequle_dagster.assets.accounts import marketo_companies
from molequle_dagster.assets.activities import marketo_activity_types
from molequle_dagster.assets.programs import marketo_programs, sync_channels
from molequle_dagster.resources import build_resources
from molequle_dagster.settings import parse_settings
from molequle_dagster_tests.conftest import SyncEnv, fast_settings_dict


def test_an_asset_imported_by_name_materializes_alone(sync_env: SyncEnv) -> None:
    settings = parse_settings(fast_settings_dict(marketo__base_url=sync_env.sandbox.base_url))
    result = dg.materialize(
        [marketo_activity_types, sync_channels, marketo_programs],
        resources=build_resources(settings),
        instance=sync_env.instance,
    )
    assert result.success
    state = sync_env.control.state
    programs = sync_env.lake.read_current("marketo_programs")
    assert programs is not None and sorted(programs["id"].to_pylist()) == sorted(
        state.programs["id"].to_pylist()
    )
    types = sync_env.lake.read_current("marketo_activity_types")
    assert types is not None and types.num_rows == len(state.activity_types)
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} >= {
        "marketo_activity_types",
        "marketo_programs",
    }


def test_an_asset_outside_the_graph_still_names_what_it_needs() -> None:
    """Without its resources a lone asset fails at definition time with the missing resource's name, not
    deep inside a run."""
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="marketo"):
        dg.materialize([marketo_companies])
