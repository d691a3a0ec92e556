"""Where the captured Marketo responses live: `../shared/marketo-fixtures` beside the repository
(as on developer machines and in CI), or $MOLEQULE_MARKETO_FIXTURES."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _locate() -> Path:
    configured = os.environ.get("MOLEQULE_MARKETO_FIXTURES")
    if configured:
        candidates = [Path(configured)]
    else:  # ../shared beside the repository, or beside any folder above it
        candidates = [parent / "shared" / "marketo-fixtures" for parent in _REPO.parents]
    for path in candidates:
        if (path / "INDEX.md").exists():
            return path
    raise FileNotFoundError(
        f"Marketo fixtures not found (looked in {', '.join(map(str, candidates))}): the contract tests need "
        "../shared/marketo-fixtures beside the repository, or MOLEQULE_MARKETO_FIXTURES pointing at a copy"
    )


MARKETO_FIXTURES = _locate()


def sandbox_access_token(
    base_url: str, client_id: str = "molequle-sandbox", secret: str = "sandbox-secret"
) -> str:
    """A bearer token from a sandbox's identity endpoint (tests and benchmarks that call it by hand)."""
    import requests

    answer = requests.get(
        f"{base_url}/identity/oauth/token",
        params={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=30,
    )
    return str(answer.json()["access_token"])
