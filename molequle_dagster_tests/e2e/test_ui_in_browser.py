"""A real browser on the deployment's UI (issue 14 item 8): Debian's headless Chromium, driven by Playwright,
renders the asset graph and the activities' partitions page with the project's assets in them.

The machine has no network: the flags keep Chromium from trying to reach Google's services. A failing test
leaves a screenshot of the page in its temp dir.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from molequle_dagster.assets.activities import MARKETO_ACTIVITIES as ACTIVITIES_TABLE
from molequle_dagster_tests.e2e.conftest import Backfill
from molequle_dagster_tests.e2e.deployment import Deployment

CHROMIUM = Path(os.environ.get("MOLEQULE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDER_TIMEOUT_MS = 60_000  # the UI's first GraphQL round trips on a busy 2-core machine

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the dev extra installs it
    sync_playwright = None


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    missing = [
        *([] if sync_playwright else ["the playwright package (pip install -e '.[dev]')"]),
        *([] if CHROMIUM.exists() else [f"Chromium at {CHROMIUM} (apt-get install chromium)"]),
    ]
    if missing:
        if os.environ.get("MOLEQULE_REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
            pytest.fail(f"the browser test needs {' and '.join(missing)}")
        pytest.skip(f"the browser test needs {' and '.join(missing)}")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    page = browser_context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:  # keep what the browser showed
        page.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)
    page.close()


def _group_assets(deployment: Deployment, group: str) -> list[str]:
    return sorted(
        "/".join(n["assetKey"]["path"]) for n in deployment.asset_nodes() if n["groupName"] == group
    )


# The name on each asset node of the graph (not the links to other groups' assets): zoomed to fit, as the
# group page opens, the nodes are the compact kind, whose names are cut in the middle past 18 characters
# ("marketo_act…_types"); the full name is only in a hover tooltip.
NODE_NAMES = "svg foreignObject [class*='assetName']"
ELLIPSIS = "\u2026"


def _shows(label: str, name: str) -> bool:
    """Whether a node's label is `name`, whole or cut in the middle as the UI cuts long names."""
    if ELLIPSIS not in label:
        return label == name
    head, _, tail = label.partition(ELLIPSIS)
    return len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail)


def _unshown(names: list[str], labels: list[str]) -> list[str]:
    """The names no node shows, each node standing for one asset at most (a bipartite matching, so two
    assets cut to look alike still need two nodes)."""
    node_of: dict[int, str] = {}

    def place(name: str, tried: set[int]) -> bool:
        for i, label in enumerate(labels):
            if i not in tried and _shows(label, name):
                tried.add(i)
                if i not in node_of or place(node_of[i], tried):
                    node_of[i] = name
                    return True
        return False

    return [name for name in names if not place(name, set())]


def test_a_cut_label_stands_for_one_asset_only() -> None:
    assert _unshown(["marketo_program_members"], ["marketo_p\u2026_members"]) == []
    assert _unshown(["marketo_people_updates"], ["marketo_p\u2026_members"]) == ["marketo_people_updates"]
    # one node cannot stand for both assets whose names it fits
    pair = ["marketo_program_members", "marketo_people_members"]
    assert _unshown(pair, ["marketo_p\u2026_members"]) == ["marketo_people_members"]
    assert _unshown(["marketo_activities"], ["marketo_activities_x"]) == ["marketo_activities"]
    # Labels as Dagster 1.13 draws them on this group's page: each node dropped loses exactly its asset.
    seen = [f"market{ELLIPSIS}_population", f"marketo_p{ELLIPSIS}_updates", f"marketo_p{ELLIPSIS}_members"]
    names = ["marketo_people_population", "marketo_people_updates", "marketo_program_members"]
    assert _unshown(names, seen) == []
    assert [_unshown(names, seen[:i] + seen[i + 1 :]) for i in range(len(seen))] == [[n] for n in names]


def test_the_asset_graph_renders_the_projects_assets(deployment: Deployment, page) -> None:
    group = deployment.asset_node(ACTIVITIES_TABLE)["groupName"]
    names = _group_assets(deployment, group)
    page.goto(f"{deployment.url}/locations/{deployment.location}/asset-groups/{group}/lineage")
    # One layout renders every node at once (each in view at this zoom): the first one means all are there.
    page.locator(NODE_NAMES).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    labels = [label.strip() for label in page.locator(NODE_NAMES).all_inner_texts()]
    missing = _unshown(names, labels)
    assert not missing, f"asset graph of group {group!r} lacks {missing} (its nodes show {labels})"


def test_the_partitions_page_renders_the_backfilled_days(
    deployment: Deployment, backfill: Backfill, page
) -> None:
    page.goto(f"{deployment.url}/assets/{ACTIVITIES_TABLE}?view=partitions")
    materialized = page.get_by_text(re.compile(r"^Materialized \(\d+\)$")).first
    materialized.wait_for(timeout=RENDER_TIMEOUT_MS)
    page.get_by_text(backfill.days[-1], exact=True).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    count = int(re.search(r"\d+", materialized.inner_text()).group())
    assert count >= len(backfill.days), materialized.inner_text()
    assert page.get_by_text(ACTIVITIES_TABLE, exact=True).count() >= 1  # the page is the asset's
