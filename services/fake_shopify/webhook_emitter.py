"""Webhook deliveries from the fake store, signed and retried like Shopify's.

Design note: a subscription is a callback URL and the topics it wants (``orders/create``,
``orders/updated``, ``orders/delete``, ``customers/create``, ``customers/update``,
``customers/delete``, ``products/create``, ``products/update``, ``products/delete``),
registered through ``POST /__fake__/webhooks``. Every store change made through
``/__fake__/mutate`` is one *event*; each subscription wanting its topic gets one
*delivery* of it, POSTed from a background thread so the mutation returns at once, as on
Shopify. What a delivery carries (https://shopify.dev/docs/apps/build/webhooks/delivery-structure,
https://shopify.dev/docs/apps/build/webhooks/verify-deliveries,
https://shopify.dev/docs/apps/build/webhooks/ignore-duplicates):

* the body: the REST-shaped resource (``{"id": N}`` for a delete), compact JSON;
* ``X-Shopify-Hmac-Sha256``: base64 of HMAC-SHA256 over the raw body, keyed with the
  app's client secret;
* ``X-Shopify-Topic``, ``X-Shopify-Shop-Domain``, ``X-Shopify-API-Version``,
  ``X-Shopify-Triggered-At``;
* ``X-Shopify-Event-Id``: the event, the same for every delivery and retry of it (the
  dedup key); ``X-Shopify-Webhook-Id``: the delivery, the same across its retries.

A delivery answered with anything but 2xx (or not answered within the timeout) is
retried with the original payload, up to ``max_attempts`` times (Shopify: 8 over 4
hours; here the delays are compressed). Test knobs: ``duplicate`` (each delivery is sent
twice, same ids), ``wrong_secret`` (signed with another secret: a receiver must refuse
it), ``drop`` (not sent at all: the poller must still catch the change). Every attempt is
in ``deliveries`` (``GET /__fake__/webhook-deliveries``) without the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

WEBHOOK_TOPICS: tuple[str, ...] = tuple(
    f"{resource}/{action}"
    for resource in ("orders", "customers", "products")
    for action in ("create", "updated" if resource == "orders" else "update", "delete")
)


def sign(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256``: base64(HMAC-SHA256(secret, raw body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def topic_for(resource: str, action: str) -> str:
    """``('orders', 'update')`` -> ``'orders/updated'``; Shopify spells the orders topic so."""
    if action == "update" and resource == "orders":
        return "orders/updated"
    return f"{resource}/{action}"


@dataclass
class Subscription:
    id: int
    address: str
    topics: tuple[str, ...]


@dataclass
class WebhookKnobs:
    """Faults a test turns on with ``POST /__fake__/webhooks {"knobs": {...}}``."""

    duplicate: bool = False
    wrong_secret: bool = False
    drop: bool = False
    max_attempts: int = 3
    retry_delay: float = 0.2
    timeout: float = 5.0


@dataclass
class Delivery:
    """One attempt to deliver one event to one subscription (what the log shows)."""

    webhook_id: str
    event_id: str
    topic: str
    address: str
    attempt: int
    status: int | None
    error: str | None = None
    sent_at: float = field(default_factory=time.time)


@dataclass
class _Pending:
    subscription: Subscription
    topic: str
    body: bytes
    event_id: str
    webhook_id: str
    triggered_at: str
    attempt: int = 1


class WebhookEmitter:
    """Subscriptions, the delivery thread and its log."""

    def __init__(self, secret: str, shop_domain: str, api_version: str = "2026-01") -> None:
        self.secret = secret
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.knobs = WebhookKnobs()
        self._subscriptions: list[Subscription] = []
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def subscribe(self, address: str, topics: list[str] | None = None) -> Subscription:
        wanted = tuple(topics or WEBHOOK_TOPICS)
        unknown = sorted(set(wanted) - set(WEBHOOK_TOPICS))
        if unknown:
            raise ValueError(f"unknown topic(s) {', '.join(unknown)}; known: {WEBHOOK_TOPICS}")
        with self._lock:
            sub = Subscription(len(self._subscriptions) + 1, address, wanted)
            self._subscriptions.append(sub)
        return sub

    def unsubscribe_all(self) -> None:
        with self._lock:
            self._subscriptions.clear()

    def subscriptions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(s) for s in self._subscriptions]

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(d) for d in self._deliveries]

    def clear_log(self) -> None:
        with self._lock:
            self._deliveries.clear()

    def emit(self, topic: str, payload: dict[str, Any]) -> str | None:
        """Queue one event for every subscription wanting ``topic``; returns its event id."""
        with self._lock:
            targets = [s for s in self._subscriptions if topic in s.topics]
        if not targets:
            return None
        event_id = str(uuid.uuid4())
        body = json.dumps(payload, separators=(",", ":")).encode()
        triggered = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        for sub in targets:
            if self.knobs.drop:
                continue
            pending = _Pending(sub, topic, body, event_id, str(uuid.uuid4()), triggered)
            self._queue.put(pending)
            if self.knobs.duplicate:
                self._queue.put(replace(pending))
        self._ensure_thread()
        return event_id

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="fake-shopify-webhooks", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while (pending := self._queue.get()) is not None:
            status, error = self._post(pending)
            with self._lock:
                self._deliveries.append(
                    Delivery(
                        pending.webhook_id,
                        pending.event_id,
                        pending.topic,
                        pending.subscription.address,
                        pending.attempt,
                        status,
                        error,
                    )
                )
            ok = status is not None and 200 <= status < 300
            if not ok and pending.attempt < self.knobs.max_attempts:
                # The retry carries the original payload and ids (it may be stale by now).
                pending.attempt += 1
                time.sleep(self.knobs.retry_delay)
                self._queue.put(pending)

    def _post(self, pending: _Pending) -> tuple[int | None, str | None]:
        secret = "not-the-app-secret" if self.knobs.wrong_secret else self.secret
        request = urllib.request.Request(
            pending.subscription.address,
            data=pending.body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Shopify-Topic": pending.topic,
                "X-Shopify-Hmac-Sha256": sign(secret, pending.body),
                "X-Shopify-Shop-Domain": self.shop_domain,
                "X-Shopify-API-Version": self.api_version,
                "X-Shopify-Webhook-Id": pending.webhook_id,
                "X-Shopify-Event-Id": pending.event_id,
                "X-Shopify-Triggered-At": pending.triggered_at,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.knobs.timeout) as response:
                response.read()
                return int(response.status), None
        except urllib.error.HTTPError as exc:
            exc.read()
            return int(exc.code), None
        except (urllib.error.URLError, OSError) as exc:
            return None, type(exc).__name__
