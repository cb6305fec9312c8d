"""The load generator run as a child process hands back every outcome and acknowledged write."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runeshift.errors import ConfigError
from services.load.load_process import LoadProcess
from services.load.world_ids import WorldIds


class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", "stub")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200, {})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self._answer(201, {"license_id": "lic-" + request["request_id"], "applied_by": "stub"})


@pytest.fixture
def stub_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_child_reports_every_request_and_write(stub_url: str) -> None:
    before = time.time()
    load = LoadProcess(stub_url, 200, WorldIds((1, 2, 3), (7, 8)), seed=5).start()
    assert before <= load.started_wall <= time.time()
    time.sleep(1.0)
    summary = load.stop()
    assert summary.requests == len(load.outcomes) >= 150
    assert summary.failed == 0
    writes = [o for o in load.outcomes if o.request_id is not None]
    assert writes and len(load.acknowledged) == len(writes)
    assert {a.license_id for a in load.acknowledged} == {"lic-" + str(o.request_id) for o in writes}
    assert all(o.served_by == "stub" for o in load.outcomes)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        LoadProcess("http://127.0.0.1:9", 0, WorldIds((1,), (1,)))


def test_abandon_stops_the_child_without_reading(stub_url: str) -> None:
    load = LoadProcess(stub_url, 50, WorldIds((1,), (1,))).start()
    load.abandon()
    assert load.outcomes == []
