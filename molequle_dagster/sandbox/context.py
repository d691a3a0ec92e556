"""What every sandbox route can reach: config, state, clock, faults, counters and the bulk engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from molequle_dagster.sandbox.clock import SandboxClock
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.model import InstanceState

if TYPE_CHECKING:  # the concrete classes live in their own modules (faults.py, bulk.py, limits.py)
    pass


@dataclass
class SandboxContext:
    config: SandboxConfig
    state: InstanceState
    clock: SandboxClock
    # Set up by app.py: faults.FaultPlan, limits.Limiter, bulk.BulkExtractService, counters, request log.
    faults: Any = None
    limiter: Any = None
    bulk: Any = None
    call_counts: dict[str, int] = field(default_factory=dict)  # endpoint key -> calls received
    request_log: list[dict[str, Any]] = field(default_factory=list)
    tokens: Any = None  # auth.TokenStore: access tokens per client_id (set up by app.py)
    internal_errors: list[dict[str, Any]] = field(default_factory=list)  # sandbox bugs answered as 611
    neighbours: Any = None  # neighbours.Neighbours: the other integrations' share of every limit
