"""The webhook fast path: Shopify's deliveries, verified and deduplicated, handed to the follower.

Design note. Shopify POSTs the REST-shaped resource of each event to our endpoint
(``orders/create``, ``orders/updated``, ``orders/cancelled``, ``orders/delete``,
``customers/...``, ``products/...``). The receiver:

1. verifies ``X-Shopify-Hmac-Sha256``, base64(HMAC-SHA256(client secret, raw body)),
   compared in constant time; anything else gets 401 and is not looked at further
   (https://shopify.dev/docs/apps/build/webhooks/verify-deliveries);
2. drops an ``X-Shopify-Event-Id`` it has already accepted (Shopify delivers at least
   once, retries carry the same event id, and several topics can share one event;
   https://shopify.dev/docs/apps/build/webhooks/ignore-duplicates), answering 200 so
   Shopify stops retrying;
3. answers 200 at once (Shopify gives up after 5 s) and hands the follower only *what*
   changed: stream, record id, deleted or not. The follower reads the record's current
   state by id and applies it with the same code as the poll, so a stale retry or an
   out-of-order delivery can never write old values, and webhook payloads need no mapper
   of their own.

The poll stays the guarantee (webhooks can be dropped); the webhook only makes a change
arrive sooner. Accepted event ids are kept by a :class:`SeenEvents`: ``runeshift sync``
gives the receiver :class:`PersistedEvents`, which records each id in
``runeshift.shopify_webhook_events`` (committed before the 200, so a duplicate delivered
after a restart, or to a second receiver on the same database, is dropped too) and keeps
the last ``remember`` ids in memory as a fast path. Retention: ids older than 7 days are
deleted at the first delivery after a start and then at most hourly (Shopify retries a
failed delivery 8 times over 4 hours, with its original event id; 7 days also covers a
receiver that was down for a weekend). When Postgres cannot be reached the receiver falls
back to its memory and accepts: a duplicate applied twice is harmless (the apply is
idempotent, and the follower cannot apply without Postgres anyway). Without a database
(:class:`InMemoryEvents`, the default) only the memory is kept. The secret is a
:class:`runeshift.secrets.Secret`, never logged; the log names topic and event id only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import psycopg

from extract.shopify_record_batches import numeric_id
from runeshift import control_store
from runeshift.connections import pg_connect
from runeshift.errors import ConfigError
from runeshift.secrets import Secret
from runeshift.shopify_follow import Stream, WebhookChange

log = logging.getLogger(__name__)

DEFAULT_PATH = "/webhooks/shopify"
_STREAMS: dict[str, Stream] = {"orders": "orders", "customers": "customers", "products": "products"}
# Topics about an order's children announce a change of their order (``refunds/create``).
_PARENTS: dict[str, tuple[Stream, str]] = {"refunds": ("orders", "order_id")}
MAX_BODY = 5 * 1024 * 1024
RETENTION = timedelta(days=7)
PRUNE_EVERY_S = 3600.0


def expected_signature(secret: Secret, body: bytes) -> str:
    """What ``X-Shopify-Hmac-Sha256`` must be for ``body``."""
    digest = hmac.new(secret.reveal().encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_signature(secret: Secret, body: bytes, signature: str | None) -> bool:
    """Constant-time check of a delivery's HMAC header against the raw body."""
    if not signature:
        return False
    return hmac.compare_digest(expected_signature(secret, body), signature.strip())


def change_from_delivery(topic: str, body: bytes, event_id: str) -> WebhookChange | None:
    """The change a delivery announces, or None for a topic the follower does not follow."""
    resource, _, action = topic.partition("/")
    stream, id_field = _PARENTS.get(resource) or (_STREAMS.get(resource), "id")
    if stream is None:
        return None
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    record_id = numeric_id(payload.get(id_field)) if isinstance(payload, dict) else None
    if record_id is None:
        return None
    deleted = action == "delete" and id_field == "id"
    return WebhookChange(event_id, stream, record_id, deleted=deleted)


@dataclass
class ReceiverStats:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class SeenEvents(Protocol):
    """Where the receiver remembers accepted event ids (called from its request threads)."""

    def first_time(self, event_id: str, topic: str) -> bool:
        """Record ``event_id`` as accepted; False when it was accepted before."""
        ...

    def close(self) -> None: ...


class InMemoryEvents:
    """The last ``limit`` accepted event ids (insertion-ordered, oldest forgotten first)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def seen(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._ids

    def first_time(self, event_id: str, topic: str = "") -> bool:
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)
            return True

    def close(self) -> None:
        return None


class PersistedEvents:
    """Accepted event ids in ``runeshift.shopify_webhook_events``, the recent ones also in memory.

    One autocommit connection shared by the request threads under a lock (a webhook
    burst is a few requests a second; each costs one INSERT).
    """

    def __init__(
        self, postgres_url: str, *, remember: int = 100_000, retention: timedelta = RETENTION
    ) -> None:
        self.postgres_url = postgres_url
        self.retention = retention
        self._memory = InMemoryEvents(remember)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._pruned_at: float | None = None

    def first_time(self, event_id: str, topic: str) -> bool:
        if self._memory.seen(event_id):
            return False
        try:
            with self._lock:
                fresh = control_store.remember_webhook_event(self._connection(), event_id, topic)
                self._prune_now_and_then()
        except psycopg.Error as exc:
            log.warning(
                "shopify webhook event %s: not recorded in Postgres (%s); deduplicated in "
                "memory only",
                event_id,
                type(exc).__name__,
            )
            self._drop_connection()
            return self._memory.first_time(event_id, topic)
        self._memory.first_time(event_id, topic)
        return fresh

    def prune(self) -> int:
        """Forget ids older than the retention; returns how many."""
        with self._lock:
            return self._prune()

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _prune_now_and_then(self) -> None:
        if self._pruned_at is None or time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            self._prune()

    def _prune(self) -> int:
        forgotten = control_store.forget_webhook_events(self._connection(), self.retention)
        self._pruned_at = time.monotonic()
        return forgotten

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = pg_connect(self.postgres_url, autocommit=True)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


class WebhookReceiver:
    """``with WebhookReceiver(secret, follower.submit) as r:`` serves ``r.url`` on a thread."""

    def __init__(
        self,
        secret: Secret,
        sink: Callable[[WebhookChange], None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = DEFAULT_PATH,
        seen: SeenEvents | None = None,
    ) -> None:
        if not secret.reveal():
            raise ConfigError(
                "setting 'shopify_webhook_secret' is not set; the webhook endpoint verifies "
                "every delivery with the app's client secret (RUNESHIFT_SHOPIFY_WEBHOOK_SECRET)"
            )
        self.secret = secret
        self.sink = sink
        self.path = path
        self.stats = ReceiverStats()
        self._events = seen or InMemoryEvents()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.receiver = self
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{host}:{self.port}{path}"
        self._thread: threading.Thread | None = None

    def handle(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """One delivery -> (status, JSON body)."""
        topic = str(headers.get("X-Shopify-Topic") or "")
        if not verify_signature(self.secret, body, headers.get("X-Shopify-Hmac-Sha256")):
            self.stats.rejected += 1
            log.warning("shopify webhook rejected: HMAC does not verify (topic %s)", topic)
            return 401, {"error": "HMAC verification failed"}
        event_id = str(
            headers.get("X-Shopify-Event-Id") or headers.get("X-Shopify-Webhook-Id") or ""
        )
        if event_id and not self._events.first_time(event_id, topic):
            self.stats.duplicates += 1
            log.info("shopify webhook %s: duplicate event %s ignored", topic, event_id)
            return 200, {"status": "duplicate"}
        change = change_from_delivery(topic, body, event_id)
        if change is None:
            self.stats.ignored += 1
            return 200, {"status": "ignored"}
        self.sink(change)
        self.stats.accepted += 1
        log.info("shopify webhook %s: event %s queued", topic, event_id)
        return 200, {"status": "accepted"}

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="shopify-webhooks", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._events.close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the receiver logs what matters, without bodies

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        if self.path.split("?", 1)[0] != receiver.path:
            self._reply(404, {"error": "not found"})
            return
        if length > MAX_BODY:
            self._reply(413, {"error": "body too large"})
            return
        body = self.rfile.read(length) if length else b""
        status, payload = receiver.handle(self.headers, body)
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: WebhookReceiver
