"""Where the captured Marketo responses live: `../shared/marketo-fixtures` beside the repository
(as on developer machines and in CI), or $MOLEQULE_MARKETO_FIXTURES."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _locate() -> Path:
    configured = os.environ.get("MOLEQULE_MARKETO_FIXTURES")
    path = Path(configured) if configured else _REPO.parent / "shared" / "marketo-fixtures"
    if not (path / "INDEX.md").exists():
        raise FileNotFoundError(
            f"Marketo fixtures not found at {path}: the contract tests need ../shared/marketo-fixtures "
            "beside the repository, or MOLEQULE_MARKETO_FIXTURES pointing at a copy"
        )
    return path


MARKETO_FIXTURES = _locate()
