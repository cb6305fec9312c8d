"""The fake Shopify Admin API as a real HTTP server on loopback.

Routes: ``POST /admin/api/{version}/graphql.json`` (GraphQL, JSON or ``application/graphql``
bodies), ``GET /admin/api/{version}/{resource}.json`` (REST), ``GET /bulk-results/{t}.jsonl``
(bulk results, no auth, like a signed storage URL), ``POST /admin/oauth/access_token``
(client-credentials grant, returns the current token) and the test controls under
``/__fake__/`` (``requests``, ``state``, ``faults``, ``rotate-token``, ``mutate``, ``clear-log``,
``webhooks``, ``webhook-deliveries``). A mutation is also an event for the webhook
subscriptions (``webhook_emitter.py``), signed with ``webhook_secret`` (the app's client
secret).

Like Shopify: header names are lowercase (HTTP/2 style; ``canonical_headers`` switches to
Title-Case), a bad or missing ``X-Shopify-Access-Token`` gets 401 with Shopify's body, a
retired version falls forward to the oldest supported one (reported in
``x-shopify-api-version``), an unknown version is a 404, and every response has an
``x-request-id``.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from services.fake_shopify.bulk_operations import BulkKnobs, BulkOperations
from services.fake_shopify.cost_throttle import CostBucket, RequestBucket
from services.fake_shopify.fault_plan import FaultPlan, FaultRule, bulk_error, rule_from_json
from services.fake_shopify.graphql_api import AdminRoot, BulkPageReader, GraphQLApi, StoreRenderer
from services.fake_shopify.request_log import LoggedRequest, RequestLog
from services.fake_shopify.rest_api import RestApi
from services.fake_shopify.store_db import RESOURCES, Resource, StoreDB
from services.fake_shopify.webhook_emitter import WebhookEmitter, WebhookKnobs, topic_for

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
REST_THROTTLED = (
    "Exceeded 2 calls per second for api client. "
    "Reduce request rates to resume uninterrupted service."
)
SHOP_DOMAIN = "tribot-store.myshopify.com"
SUPPORTED_VERSIONS = ("2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
DEFAULT_SCOPES = ("read_customers", "read_products", "read_orders", "read_all_orders")
_VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$")
_ADMIN = re.compile(r"^/admin/api/(?P<version>[^/]+)/(?P<rest>.+)$")


@dataclass
class ServerConfig:
    """Everything the command line and tests can set."""

    db_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    token: str = "shpat_fake_token"
    webhook_secret: str = "fake_client_secret"
    supported_versions: tuple[str, ...] = SUPPORTED_VERSIONS
    bucket_size: float = 1000.0
    restore_rate: float = 50.0
    rest_bucket_size: int = 40
    rest_leak_rate: float = 2.0
    canonical_headers: bool = False
    report_throttle_status: bool = True
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    results_dir: Path | None = None
    faults: list[FaultRule] = field(default_factory=list)
    bulk: BulkKnobs = field(default_factory=BulkKnobs)


def served_version(requested: str, supported: tuple[str, ...]) -> str | None:
    """The version Shopify answers with: as asked, the oldest supported one, or None (404)."""
    if requested == "unstable":
        return requested
    if not _VERSION.match(requested) or requested > max(supported):
        return None
    return requested if requested >= min(supported) else min(supported)


class FakeShopify:
    """The shop: store, APIs, buckets, faults and log, independent of the HTTP plumbing."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = StoreDB(config.db_path)
        self.token = config.token
        self.base_url = ""
        self.log = RequestLog()
        self.faults = FaultPlan(list(config.faults))
        self.cost_bucket = CostBucket(config.bucket_size, config.restore_rate)
        self.rest_bucket = RequestBucket(config.rest_bucket_size, config.rest_leak_rate)
        renderer = StoreRenderer(self.store)
        root = AdminRoot(self.store, renderer, None, config.scopes, SHOP_DOMAIN)
        results = config.results_dir or config.db_path.with_name(
            config.db_path.name + ".bulk-results"
        )
        self.bulk = BulkOperations(
            BulkPageReader(root), results, lambda: self.base_url, config.bulk
        )
        root.bulk = self.bulk
        self.graphql = GraphQLApi(
            root, self.cost_bucket, report_throttle_status=config.report_throttle_status
        )
        self.rest = RestApi(self.store)
        self.webhooks = WebhookEmitter(
            config.webhook_secret, SHOP_DOMAIN, max(config.supported_versions)
        )
        self._token_lock = threading.Lock()

    def token_ok(self, presented: str | None) -> bool:
        with self._token_lock:
            return presented is not None and presented == self.token

    def rotate_token(self, new: str | None) -> str:
        with self._token_lock:
            self.token = new or f"shpat_{uuid.uuid4().hex}"
            return self.token

    def control(self, method: str, name: str, payload: dict[str, Any]) -> tuple[int, Any]:
        """The ``/__fake__/`` endpoints."""
        if name == "requests" and method == "GET":
            return 200, {"requests": self.log.as_json()}
        if name == "clear-log" and method == "POST":
            self.log.clear()
            return 200, {"ok": True}
        if name == "state" and method == "GET":
            return 200, {
                "graphql_bucket": self.cost_bucket.status().as_json(),
                "token": self.token,
                "faults": self.faults.as_json(),
                "counts": {r: self.store.count(r) for r in RESOURCES},
            }
        if name == "rotate-token" and method == "POST":
            return 200, {"token": self.rotate_token(payload.get("token"))}
        if name == "faults" and method == "POST":
            return self._set_faults(payload)
        if name == "mutate" and method == "POST":
            return self._mutate(payload)
        if name == "webhooks" and method == "POST":
            return self._webhooks(payload)
        if name == "webhooks" and method == "GET":
            return 200, {"subscriptions": self.webhooks.subscriptions()}
        if name == "webhook-deliveries" and method == "GET":
            return 200, {"deliveries": self.webhooks.deliveries()}
        return 404, {"errors": "Not Found"}

    def _set_faults(self, payload: dict[str, Any]) -> tuple[int, Any]:
        try:
            if payload.get("clear"):
                self.faults.clear()
            for rule in payload.get("rules", []):
                self.faults.add(rule_from_json(rule))
            if "bulk_fail" in payload:
                self.bulk.knobs.fail_next = bulk_error(str(payload["bulk_fail"]))
                self.bulk.knobs.fail_after_pages = int(payload.get("fail_after_pages", 1))
            for knob in (
                "page_size",
                "page_delay",
                "group_objects",
                "escape_slashes",
                "trailing_newline",
            ):
                if knob in payload.get("bulk", {}):
                    setattr(self.bulk.knobs, knob, payload["bulk"][knob])
            if payload.get("drain_bucket"):
                self.cost_bucket.drain()
        except (KeyError, ValueError, TypeError) as exc:
            return 400, {"errors": str(exc)}
        return 200, {"faults": self.faults.as_json()}

    def _webhooks(self, payload: dict[str, Any]) -> tuple[int, Any]:
        """Subscribe (``address``, ``topics``), clear, or set delivery knobs."""
        try:
            if payload.get("clear"):
                self.webhooks.unsubscribe_all()
                self.webhooks.clear_log()
            knobs = payload.get("knobs", {})
            for name in WebhookKnobs.__dataclass_fields__:
                if name in knobs:
                    setattr(
                        self.webhooks.knobs, name, type(getattr(WebhookKnobs(), name))(knobs[name])
                    )
            if payload.get("address"):
                self.webhooks.subscribe(str(payload["address"]), payload.get("topics"))
        except (KeyError, ValueError, TypeError) as exc:
            return 400, {"errors": str(exc)}
        return 200, {"subscriptions": self.webhooks.subscriptions()}

    def _mutate(self, payload: dict[str, Any]) -> tuple[int, Any]:
        """Create (``record``), update (``changes``) or delete a record, then emit its webhook."""
        resource = payload.get("resource")
        if resource not in RESOURCES:
            return 400, {"errors": f"resource must be one of {', '.join(RESOURCES)}"}
        res: Resource = resource
        if isinstance(payload.get("record"), dict):
            doc = dict(payload["record"])
            self.store.put(res, doc)
            self.webhooks.emit(topic_for(res, "create"), self.rest.render(res, doc))
            return 200, {"record": doc}
        record_id = int(payload["id"])
        if payload.get("delete"):
            if not self.store.delete(res, record_id):
                return 404, {"errors": "Not Found"}
            self.webhooks.emit(topic_for(res, "delete"), {"id": record_id})
            return 200, {"deleted": True}
        updated = self.store.update(res, record_id, dict(payload.get("changes", {})))
        if updated is None:
            return 404, {"errors": "Not Found"}
        self.webhooks.emit(topic_for(res, "update"), self.rest.render(res, updated))
        return 200, {"record": updated}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def send_response(self, code: int, message: str | None = None) -> None:
        # The stdlib writes "Server"/"Date"; Shopify's edge sends every name lowercase.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("server", "fake-shopify")
        self.send_header("date", self.date_time_string())

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        body = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode()
        all_headers = {
            "content-type": "application/json; charset=utf-8",
            "x-request-id": str(uuid.uuid4()),
            **(headers or {}),
            "content-length": str(len(body)),
        }
        self._record(status)
        self.send_response(status)
        canonical = self.server.shop.config.canonical_headers
        for name, value in all_headers.items():
            self.send_header(
                "-".join(p.capitalize() for p in name.split("-")) if canonical else name, value
            )
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST: the client sees a reset.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _dispatch(self, method: str) -> None:
        shop = self.server.shop
        url = urlsplit(self.path)
        body = self._body() if method == "POST" else b""
        if url.path.startswith("/__fake__/"):
            try:
                payload = json.loads(body) if body else {}
            except json.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                self._send(400, {"errors": "expected a JSON object"})
                return
            status, out = shop.control(method, url.path[len("/__fake__/") :], payload)
            self._send(status, out)
            return
        if url.path.startswith("/bulk-results/") and method == "GET":
            self._bulk_result(url.path[len("/bulk-results/") :])
            return
        if url.path == "/admin/oauth/access_token" and method == "POST":
            self._send(
                200,
                {
                    "access_token": shop.token,
                    "scope": ",".join(shop.config.scopes),
                    "expires_in": 86399,
                },
            )
            return
        match = _ADMIN.match(url.path)
        if match is None:
            self._send(404, {"errors": "Not Found"})
            return
        self._admin(method, match["version"], match["rest"], url.query, body)

    def _admin(self, method: str, version: str, rest: str, query: str, body: bytes) -> None:
        shop = self.server.shop
        started = time.time()
        api = "graphql" if rest == "graphql.json" else "rest"
        seq = shop.log.next_seq()
        entry = LoggedRequest(
            seq, method, f"/admin/api/{version}/{rest}", query, 0, started, 0.0, api
        )
        self._pending: LoggedRequest | None = entry
        try:
            self._admin_inner(entry, method, version, rest, query, body)
        finally:
            self._record(status=None)

    def _record(self, status: int | None) -> None:
        """Log the pending API request before its response leaves, so a client reading the
        log right after its response finds the entry."""
        entry: LoggedRequest | None = getattr(self, "_pending", None)
        self._pending = None
        if entry is None:
            return
        if status is not None:
            entry.status = status
        entry.duration_ms = round((time.time() - entry.started_at) * 1000, 2)
        self.server.shop.log.add(entry)

    def _admin_inner(
        self, entry: LoggedRequest, method: str, version: str, rest: str, query: str, body: bytes
    ) -> None:
        shop = self.server.shop
        if entry.api == "graphql" and body:
            entry.graphql_query = body.decode("utf-8", "replace")[:2000]
        fault = shop.faults.pick(entry.seq, entry.api)
        if fault is not None:
            entry.fault = fault.action
            if fault.action == "slow":
                time.sleep(fault.slow_seconds)
            elif fault.action == "reset":
                self._reset()
                return
            elif fault.action == "invalid-json":
                entry.status = 200
                self._send(200, None, raw=b'{"data":{"orders":{"edges":[{"node":')
                return
            else:
                status = int(fault.action)
                headers = (
                    {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
                )
                message = (
                    REST_THROTTLED
                    if status == 429
                    else "Internal Server Error"
                    if status == 500
                    else "Service Unavailable"
                    if status == 503
                    else "Bad Gateway"
                )
                entry.status = status
                self._send(status, {"errors": message}, headers)
                return
        served = served_version(version, shop.config.supported_versions)
        if served is None:
            entry.status = 404
            self._send(404, {"errors": "Not Found"})
            return
        headers = {"x-shopify-api-version": served}
        if not shop.token_ok(self.headers.get("X-Shopify-Access-Token")):
            entry.status = 401
            self._send(401, {"errors": INVALID_TOKEN}, headers)
            return
        if entry.api == "graphql":
            if method != "POST":
                entry.status = 405
                self._send(405, {"errors": "Method Not Allowed"}, headers)
                return
            outcome = shop.graphql.handle(
                body, self.headers.get("Content-Type") or "application/json", served
            )
            entry.status = outcome.status
            entry.requested_cost = outcome.requested_cost
            entry.actual_cost = outcome.actual_cost
            entry.throttled = outcome.throttled
            status_now = shop.cost_bucket.status()
            entry.throttle_available = status_now.currently_available
            entry.throttle_maximum = status_now.maximum_available
            self._send(outcome.status, outcome.body, headers)
            return
        allowed, used = shop.rest_bucket.try_take()
        limit = f"{used}/{shop.rest_bucket.capacity}"
        entry.rest_call_limit = limit
        headers["x-shopify-shop-api-call-limit"] = limit
        if not allowed:
            entry.status = 429
            headers["retry-after"] = str(max(shop.rest_bucket.retry_after(), 2.0))
            self._send(429, {"errors": REST_THROTTLED}, headers)
            return
        if method != "GET":
            entry.status = 405
            self._send(405, {"errors": "Method Not Allowed"}, headers)
            return
        params = dict(parse_qsl(query, keep_blank_values=True))
        base = f"{shop.base_url}/admin/api/{version}"
        result = shop.rest.handle(rest, params, base)
        entry.status = result.status
        self._send(result.status, result.body, {**headers, **result.headers})

    def _bulk_result(self, name: str) -> None:
        token = name.removesuffix(".jsonl")
        path = (
            self.server.shop.bulk.result_path(token)
            if re.fullmatch(r"[0-9a-f]{32}", token)
            else None
        )
        if path is None:
            self._send(
                404,
                None,
                raw=b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>",
                headers={"content-type": "application/xml"},
            )
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("content-type", "application/jsonl")
        self.send_header("content-length", str(size))
        self.end_headers()
        with path.open("rb") as src:
            while chunk := src.read(1 << 16):
                self.wfile.write(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    shop: FakeShopify


class FakeShopifyServer:
    """``with FakeShopifyServer(ServerConfig(db_path)) as server:`` serves on a thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.shop = FakeShopify(config)
        self._httpd = _Server((config.host, config.port), _Handler)
        self._httpd.shop = self.shop
        self.port = int(self._httpd.server_address[1])
        self.base_url = f"http://{config.host}:{self.port}"
        self.shop.base_url = self.base_url
        self._thread: threading.Thread | None = None

    def admin_url(self, version: str = "2026-01") -> str:
        return f"{self.base_url}/admin/api/{version}"

    def start(self) -> FakeShopifyServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-shopify", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self.shop.webhooks.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeShopifyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
