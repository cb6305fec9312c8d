"""Python client of a service's admin port: the write fence and the request counters.

What the cutover drives: ``hold(drain_timeout=10)`` returns once the writes running in the
service have finished (check ``drained``), ``forward(to=rune_url)`` sends held and later
writes to the Rune service, ``open()`` lets them apply where they are.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3

from runeshift.errors import ConfigError, TransientError
from services.rune_service.write_fence import FenceStatus, ReadsMode, WritesMode


class FenceClient:
    """Talks to ``admin_url`` (``http://127.0.0.1:<admin port>``)."""

    def __init__(self, admin_url: str, *, timeout_s: float = 30.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=2.0, read=timeout_s)
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(
                method,
                self.admin_url + path,
                body=json.dumps(body).encode() if body is not None else None,
                headers={"content-type": "application/json"},
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(
                f"service admin port {self.admin_url} did not answer: {exc}"
            ) from exc
        data: dict[str, Any] = json.loads(response.data or b"{}")
        if response.status == 400:
            raise ConfigError(f"{self.admin_url}{path}: {data.get('error')}")
        if response.status != 200:
            raise TransientError(f"{self.admin_url}{path} answered {response.status}: {data}")
        return data

    def status(self) -> FenceStatus:
        return FenceStatus.from_json(self._call("GET", "/admin/fence"))

    def set(
        self,
        *,
        writes: WritesMode | None = None,
        reads: ReadsMode | None = None,
        forward_to: str | None = None,
        budget_s: float | None = None,
        drain_timeout: float | None = None,
    ) -> FenceStatus:
        body: dict[str, Any] = {}
        for name, value in (
            ("writes", writes),
            ("reads", reads),
            ("forward_to", forward_to),
            ("budget_s", budget_s),
            ("drain_timeout", drain_timeout),
        ):
            if value is not None:
                body[name] = value
        return FenceStatus.from_json(self._call("POST", "/admin/fence", body))

    def hold(self, *, drain_timeout: float | None = None) -> FenceStatus:
        """Hold new writes; with ``drain_timeout``, wait for those in flight to finish."""
        return self.set(writes="hold", drain_timeout=drain_timeout)

    def forward(self, to: str) -> FenceStatus:
        return self.set(writes="forward", forward_to=to)

    def open(self) -> FenceStatus:
        return self.set(writes="open")

    def stats(self) -> dict[str, Any]:
        """Requests served by route, writes applied/replayed/forwarded (``/admin/stats``)."""
        return self._call("GET", "/admin/stats")
