"""Scripted and random faults per endpoint, so tests can show the client copes with a misbehaving Marketo.

A rule names an endpoint pattern ("GET /rest/v1/activities.json", "POST /bulk/*", "*"), a fault kind,
and when it fires: the Nth matching call after injection (and the `times - 1` calls after it), or each
call with probability `rate` from a seeded RNG (at most `times` firings; `times=None` for no cap), or,
with neither, the next `times` calls. The gate middleware in app.py acts on generic kinds; bulk-only
kinds are handed to the bulk routes in `request.state.fault`.

A bulk-only kind only ever sees the calls it can act on (`BULK_FAULT_ENDPOINTS`): a rule `("*",
"truncated_body", rate=0.1)` counts and fires on file downloads only, so a rare call family is hit at the
rate asked for and `nth` counts that family's calls. Naming an endpoint where the kind cannot act is an
error at injection.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")

# kind -> Marketo error code for faults answered with a normal error envelope.
ENVELOPE_FAULTS: dict[str, tuple[str, str]] = {
    "token_invalid": ("601", "Access token invalid"),
    "token_expired": ("602", "Access token expired"),
    "timeout_604": ("604", "Request time-out"),
    "unavailable_608": ("608", "API Temporarily Unavailable"),
    "system_error_611": ("611", "System error"),
    "rate_limit": ("606", "Max rate limit '100' exceeded with in '20' secs"),
    "concurrency_limit": ("615", "Concurrent access limit '10' reached"),
    "daily_quota": ("607", "Daily quota reached"),
    "error_500": ("500", "Internal Server error"),
    "error_502": ("502", "Bad Gateway"),
}
HTTP_FAULTS = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}
WIRE_FAULTS = frozenset({"connection_reset", "slow", "html_502", "malformed_json"})
BULK_ONLY_FAULTS = frozenset({"truncated_body", "queue_full", "export_quota", "job_failed", "job_stuck"})
FAULT_KINDS = frozenset(ENVELOPE_FAULTS) | frozenset(HTTP_FAULTS) | WIRE_FAULTS | BULK_ONLY_FAULTS

_CREATE, _ENQUEUE = "POST /bulk/v1/*/export/create.json", "POST /bulk/v1/*/export/{}/enqueue.json"
_STATUS, _FILE = "GET /bulk/v1/*/export/{}/status.json", "GET /bulk/v1/*/export/{}/file.json"
# Where each bulk-only kind acts: queue_full/export_quota answer 1029 on create or enqueue; job_failed marks
# the job on create or enqueue (it fails when it would have finished) or fails a running job on a status
# poll; job_stuck keeps it queued forever; truncated_body cuts a download short.
BULK_FAULT_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "queue_full": (_CREATE, _ENQUEUE),
    "export_quota": (_CREATE, _ENQUEUE),
    "job_failed": (_CREATE, _ENQUEUE, _STATUS),
    "job_stuck": (_CREATE, _ENQUEUE),
    "truncated_body": (_FILE,),
}

# Short aliases people reach for first.
ALIASES = {
    "601": "token_invalid",
    "602": "token_expired",
    "604": "timeout_604",
    "606": "rate_limit",
    "607": "daily_quota",
    "608": "unavailable_608",
    "611": "system_error_611",
    "615": "concurrency_limit",
    "500": "http_500",
    "502": "http_502",
    "503": "http_503",
    "504": "http_504",
    "reset": "connection_reset",
    "html": "html_502",
}


@dataclass
class FaultRule:
    endpoint: str
    kind: str
    nth: int | None = None
    rate: float | None = None
    times: int | None = 1
    seconds: float = 35.0  # only for "slow": how long the response is held back
    seed: int = 0
    seen: int = 0  # matching calls since injection
    fired: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def matches(self, endpoint_key: str) -> bool:
        if not acts_on(self.kind, endpoint_key):
            return False
        if self.endpoint in ("*", endpoint_key):
            return True
        # Placeholder names do not matter: "{exportId}" in a rule matches a route's "{export_id}".
        return fnmatch.fnmatchcase(
            _PLACEHOLDER.sub("{}", endpoint_key), _PLACEHOLDER.sub("{}", self.endpoint)
        )

    def fires(self) -> bool:
        """Called once per matching call, in arrival order."""
        self.seen += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.rate is not None:
            hit = self._rng.random() < self.rate
        else:
            first = self.nth or 1
            hit = self.seen >= first and (self.times is None or self.seen < first + self.times)
        if hit:
            self.fired += 1
        return hit

    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def describe(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "kind": self.kind,
            "nth": self.nth,
            "rate": self.rate,
            "times": self.times,
            "seconds": self.seconds,
            "seen": self.seen,
            "fired": self.fired,
        }


def acts_on(kind: str, endpoint_key: str) -> bool:
    """Whether a fault of this kind can do anything on this endpoint (generic kinds act everywhere)."""
    places = BULK_FAULT_ENDPOINTS.get(kind)
    key = _PLACEHOLDER.sub("{}", endpoint_key)
    return places is None or any(fnmatch.fnmatchcase(key, place) for place in places)


@dataclass
class PickedFault:
    kind: str
    seconds: float = 0.0


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired = threading.Condition(self._lock)  # notified whenever a rule fires
        self._rules: list[FaultRule] = []
        self.released = threading.Event()  # set to cut every held "slow" response short

    def inject(
        self,
        endpoint: str,
        kind: str,
        *,
        nth: int | None = None,
        rate: float | None = None,
        times: int | None = 1,
        seconds: float = 35.0,
        seed: int = 0,
    ) -> FaultRule:
        kind = ALIASES.get(kind, kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind: unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if not endpoint or not isinstance(endpoint, str):
            raise ValueError(
                "endpoint: expected 'METHOD /path/template', a glob such as 'GET /rest/*', or '*'"
            )
        if nth is not None and nth < 1:
            raise ValueError(f"nth: expected a call number >= 1, got {nth}")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate: expected a probability between 0 and 1, got {rate}")
        if nth is not None and rate is not None:
            raise ValueError("nth/rate: give one of them, not both")
        if times is not None and times < 1:
            raise ValueError(f"times: expected >= 1 (or None for no cap), got {times}")
        if seconds < 0:
            raise ValueError(f"seconds: expected >= 0, got {seconds}")
        if not any(c in endpoint for c in "*?[") and not acts_on(kind, endpoint):
            places = " or ".join(BULK_FAULT_ENDPOINTS[kind])
            raise ValueError(f"endpoint: {kind!r} acts only on {places}; {endpoint!r} is neither")
        rule = FaultRule(
            endpoint=endpoint, kind=kind, nth=nth, rate=rate, times=times, seconds=seconds, seed=seed
        )
        with self._lock:
            self._rules.append(rule)
            self.released.clear()
        return rule

    def pick(self, endpoint_key: str) -> PickedFault | None:
        """The fault for this call, if any. Every matching rule sees the call, so counts stay exact."""
        with self._lock:
            if not self._rules:
                return None
            picked: PickedFault | None = None
            for rule in self._rules:
                if rule.matches(endpoint_key) and rule.fires() and picked is None:
                    picked = PickedFault(rule.kind, rule.seconds)
            if picked is not None:
                self._fired.notify_all()
            return picked

    def wait_fired(self, index: int, fired: int = 1, timeout: float = 120.0) -> bool:
        """Block until rule `index` (in injection order) has fired `fired` times; False on timeout. Lets a
        test act at an exact point of a client's work (e.g. kill it while a `slow` answer is held)."""
        with self._fired:
            if not 0 <= index < len(self._rules):
                raise ValueError(f"index: no fault rule {index}; {len(self._rules)} injected")
            rule = self._rules[index]
            return self._fired.wait_for(lambda: rule.fired >= fired, timeout)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.released.set()

    def rules(self) -> list[dict]:
        with self._lock:
            return [rule.describe() for rule in self._rules]
