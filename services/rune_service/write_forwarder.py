"""Sends a write that arrived here to another service and relays its answer, unchanged.

Used by the fence's ``forward`` mode: a write that reached the legacy stand-in just before
the proxy switched is delivered to the Rune service with the same body (so the same
``request_id``: Rune's idempotency makes a forwarded retry harmless) and the client gets
Rune's status and body as if it had asked Rune directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import urllib3

from runeshift.errors import TransientError

FORWARD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ForwardedResponse:
    status: int
    body: bytes
    served_by: str


class WriteForwarder:
    """One keep-alive connection pool shared by the request threads."""

    def __init__(self, timeout_s: float = FORWARD_TIMEOUT_S) -> None:
        self._http = urllib3.PoolManager(
            maxsize=32, retries=False, timeout=urllib3.Timeout(connect=2.0, read=timeout_s)
        )

    def forward(self, base_url: str, path: str, body: bytes, by: str) -> ForwardedResponse:
        try:
            response = self._http.request(
                "POST",
                base_url.rstrip("/") + path,
                body=body,
                headers={"content-type": "application/json", "x-forwarded-by": by},
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"forwarding {path} to {base_url} failed: {exc}") from exc
        return ForwardedResponse(
            response.status, response.data, response.headers.get("x-served-by", "")
        )
