"""The HTTP front of both services: routes, JSON, the write fence, the admin port.

``ServiceServer(store)`` serves the API of :mod:`services.rune_service.shop_api` from any
:class:`ShopStore` on a public port, and the fence and counters on a separate admin port
(loopback only, never behind the proxy, so clients cannot move a fence):

* ``GET /admin/fence`` -> :class:`FenceStatus`;
  ``POST /admin/fence {"writes": "hold"|"open"|"forward", "forward_to": url, "reads":
  "open"|"drain", "budget_s": s, "drain_timeout": s}`` sets it and, with ``drain_timeout``,
  answers once the writes in flight here have finished (``drained`` says whether they did).
* ``GET /admin/stats`` -> requests served, by route, and writes applied/forwarded here.

Every response carries ``x-served-by`` (``rune`` or ``legacy``: for a forwarded write, the
service that applied it) so tests and the drill can see where the proxy sent a request.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from runeshift.errors import ConfigError, RuneshiftError, TransientError
from services.rune_service.shop_api import (
    MAX_PAGE,
    ApiError,
    ShopStore,
    WriteRequest,
    flat_fields,
    parse_grant,
    parse_order,
    parse_request_id,
)
from services.rune_service.write_fence import (
    DEFAULT_BUDGET_S,
    FenceExpired,
    WriteFence,
    parse_reads_mode,
    parse_writes_mode,
)
from services.rune_service.write_forwarder import WriteForwarder


class RequestStats:
    """Counts of requests served, by route name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()

    def count(self, route: str, outcome: str | None = None) -> None:
        with self._lock:
            self._routes[route] += 1
            if outcome:
                self._outcomes[outcome] += 1

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            routes = dict(self._routes)
            outcomes = dict(self._outcomes)
        reads = sum(n for r, n in routes.items() if r.startswith("GET "))
        return {
            "requests": sum(routes.values()),
            "reads": reads,
            "writes": sum(routes.values()) - reads,
            "by_route": routes,
            "writes_applied": outcomes.get("applied", 0),
            "writes_replayed": outcomes.get("replayed", 0),
            "writes_forwarded": outcomes.get("forwarded", 0),
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog is 5: a burst of new connections from HAProxy then
    # overflows it, connects (health checks included) time out and HAProxy marks the
    # service DOWN (503s at 500 requests/s in the drill). The kernel caps it at somaxconn.
    request_queue_size = 1024
    service: ServiceServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY. A response is two writes (the headers, then the body); with Nagle on, the
    # body waited for the peer's delayed ACK of the headers: every request on a kept-alive
    # connection (HAProxy's, the fence client's) took 44 ms however fast the service was.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    def _send(
        self,
        status: int,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        served_by: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = raw if raw is not None else json.dumps(payload, default=str).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", served_by or self.server.service.store.name)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _PublicHandler(_Handler):
    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_HEAD(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        raw = self._body()
        self._guarded(lambda: self._post(raw))

    def _guarded(self, action: Any) -> None:
        try:
            action()
        except ConnectionError:  # the client (or the proxy's health check) went away
            self.close_connection = True
        except ApiError as exc:
            self._send(exc.status, {"error": exc.message})
        except FenceExpired as exc:
            self._send(503, {"error": str(exc)}, headers={"retry-after": "1"})
        except TransientError as exc:
            self._send(502, {"error": str(exc)})
        except (RuneshiftError, OSError) as exc:
            self._send(503, {"error": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:  # a driver error: report it, keep serving
            self._send(503, {"error": f"{type(exc).__name__}: {exc}"})

    def _get(self) -> None:
        service = self.server.service
        store = service.store
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        segments = path.strip("/").split("/")
        if path == "/ready":
            service.stats.count("GET /ready")
            if not service.fence.reads_open:
                self._send(503, {"ready": False, "reason": "reads are drained by the fence"})
                return
            store.ping()
            self._send(200, {"ready": True, "service": store.name})
            return
        if len(segments) == 2 and segments[0] == "accounts":
            service.stats.count("GET /accounts")
            account = store.account(_positive(segments[1], "member id"))
            if account is None:
                raise ApiError(404, f"no account with legacy member id {segments[1]}")
            self._send(200, flat_fields(account))
            return
        if path == "/scripts":
            service.stats.count("GET /scripts")
            limit = min(_positive(_one(query, "limit", "50"), "limit"), MAX_PAGE)
            after_text = _one(query, "after", "")
            after = _positive(after_text, "after") if after_text else None
            self._send(200, store.scripts(limit, after).as_json())
            return
        if path == "/licenses/check":
            service.stats.count("GET /licenses/check")
            check = store.license_check(
                _positive(_one(query, "member_id", ""), "member_id"),
                _positive(_one(query, "script_id", ""), "script_id"),
            )
            self._send(200, flat_fields(check))
            return
        if len(segments) == 2 and segments[0] == "writes":
            service.stats.count("GET /writes")
            status = store.write_status(parse_request_id(unquote(segments[1])))
            self._send(200 if status.applied else 404, flat_fields(status))
            return
        raise ApiError(404, f"no route GET {path}")

    def _post(self, raw: bytes) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        request: WriteRequest
        if path == "/orders":
            request = parse_order(self._json_body(raw))
        elif path == "/licenses":
            request = parse_grant(self._json_body(raw))
        else:
            raise ApiError(404, f"no route POST {path}")
        self._write(path, raw, request)

    def _write(self, path: str, raw: bytes, request: WriteRequest) -> None:
        service = self.server.service
        store = service.store
        with service.fence.admit() as admission:
            if admission.route == "forward" and admission.forward_to:
                # A retry of a write applied here before the switch is answered from here,
                # not applied a second time on the other side.
                earlier = store.find_write(request.request_id)
                if earlier is None:
                    service.stats.count(f"POST {path}", "forwarded")
                    answer = service.forwarder.forward(admission.forward_to, path, raw, store.name)
                    self._send(
                        answer.status,
                        raw=answer.body,
                        served_by=answer.served_by or "unknown",
                        headers={"x-forwarded-by": store.name},
                    )
                    return
                result = earlier
            else:
                result = store.apply_write(request)
        service.stats.count(f"POST {path}", "replayed" if result.replayed else "applied")
        self._send(200 if result.replayed else 201, result.as_json())


class _AdminHandler(_Handler):
    def do_GET(self) -> None:
        service = self.server.service
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/admin/fence":
            self._send(200, service.fence.status().as_json())
        elif path == "/admin/stats":
            self._send(200, {"service": service.store.name, **service.stats.as_json()})
        else:
            self._send(404, {"error": f"no admin route GET {path}"})

    def do_POST(self) -> None:
        service = self.server.service
        path = urlsplit(self.path).path.rstrip("/")
        if path != "/admin/fence":
            self._send(404, {"error": f"no admin route POST {path}"})
            return
        try:
            body = self._json_body(self._body())
            writes = parse_writes_mode(body["writes"]) if "writes" in body else None
            reads = parse_reads_mode(body["reads"]) if "reads" in body else None
            budget = float(body["budget_s"]) if "budget_s" in body else None
            status = service.fence.set(
                writes=writes, reads=reads, forward_to=body.get("forward_to"), budget_s=budget
            )
            if body.get("drain_timeout") is not None:
                status = service.fence.wait_drained(float(body["drain_timeout"]))
        except (ApiError, ConfigError, ValueError, TypeError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, status.as_json())


def _one(query: dict[str, list[str]], name: str, default: str) -> str:
    values = query.get(name)
    return values[0] if values else default


def _positive(text: str, what: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise ApiError(400, f"'{what}' must be a positive integer, got {text!r}")
    return int(text)


class ServiceServer:
    """Public API and admin port of one service, each a threading HTTP server on loopback."""

    def __init__(
        self,
        store: ShopStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_port: int = 0,
        fence_budget_s: float = DEFAULT_BUDGET_S,
    ) -> None:
        self.store = store
        self.fence = WriteFence(fence_budget_s)
        self.forwarder = WriteForwarder()
        self.stats = RequestStats()
        self._public = _Server((host, port), _PublicHandler)
        self._admin = _Server((host, admin_port), _AdminHandler)
        self._public.service = self
        self._admin.service = self
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._public.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def admin_url(self) -> str:
        host, port = self._admin.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ServiceServer:
        """Serve both ports on background threads (tests); see ``serve_forever`` for processes."""
        for server in (self._public, self._admin):
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        admin = threading.Thread(target=self._admin.serve_forever, daemon=True)
        admin.start()
        self._threads.append(admin)
        self._public.serve_forever()

    def shutdown(self) -> None:
        for server in (self._public, self._admin):
            server.shutdown()
            server.server_close()
        self.store.close()
