"""An HTTP proxy in front of the sandbox that loses answers: for a request it is told about, it either
forwards it and then drops the connection instead of answering (`lose_answer`: Marketo applied it, the
client never heard), or drops the connection first and forwards the request later, when the test says
(`apply_later` + `release`: the answer is lost and the effect shows up only afterwards).

The sandbox's own `slow` fault cannot do this for requests with a body: the body is read after the hold,
from a client that has already gone, so such a request is never applied.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import requests

from molequle_dagster_tests.marketo.local_http import LocalHttp, send

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


@dataclass
class _Rule:
    method: str
    suffix: str
    mode: str  # "lose_answer" | "apply_later"
    times: int = 1
    held: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


class LossyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.lost: list[str] = []  # paths whose answer was lost
        self._http = LocalHttp(self._handle, quiet=True)
        self.base_url = self._http.base_url

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        rule = self._match(h.command, h.path)
        if rule is not None and rule.mode == "apply_later":
            rule.held.append((h.command, h.path, headers, body))
            self._drop(h)
            return
        answer = self._forward(h.command, h.path, headers, body)
        if rule is not None:  # lose_answer: applied upstream, never answered here
            self._drop(h)
            return
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-type"}}
        send(h, answer.content, status=answer.status_code,
             ctype=answer.headers.get("Content-Type", "application/octet-stream"), headers=kept)

    def lose_answer(self, method: str, suffix: str, times: int = 1) -> None:
        with self._lock:
            self._rules.append(_Rule(method, suffix, "lose_answer", times))

    def apply_later(self, method: str, suffix: str, times: int = 1) -> None:
        with self._lock:
            self._rules.append(_Rule(method, suffix, "apply_later", times))

    def release(self) -> int:
        """Forward every held request now; the number forwarded."""
        with self._lock:
            held = [h for rule in self._rules for h in rule.held]
            for rule in self._rules:
                rule.held.clear()
        for method, path, headers, body in held:
            self._forward(method, path, headers, body)
        return len(held)

    def _match(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and rule.method == method and path.split("?")[0].endswith(rule.suffix):
                    rule.times -= 1
                    self.lost.append(path)
                    return rule
        return None

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> requests.Response:
        return requests.request(method, self.upstream + path, headers=headers, data=body, timeout=30)

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        """Reset the connection: the client sees it die without an answer."""
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        handler.connection.close()

    def close(self) -> None:
        self._http.close()


@contextmanager
def lossy_proxy(upstream: str) -> Iterator[LossyProxy]:
    proxy = LossyProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
