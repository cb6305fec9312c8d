"""A thin, honest client for the Shopify Admin API (GraphQL first, REST for leftovers).

Design note: the client holds a connection pool, the current access token, the
cost-bucket prediction (``CostThrottle``) and counters (``ClientStats``). It is
built once by the orchestrator from settings and handed to the bulk exporter
and the incremental reader. It keeps no state that must survive a crash: the
token is fetched again from ``token_provider`` and the bucket is re-learnt
from the first response.

What it guarantees to callers:

* the API version is pinned (``/admin/api/<version>/``) and a response served
  by another version (Shopify silently "falls forward" from retired versions)
  is logged, never hidden;
* a GraphQL query is sent only when the last known ``throttleStatus`` says it
  can be paid, so steady state sees no THROTTLED answer;
* THROTTLED, HTTP 429 (honouring ``retry-after``), 5xx and connection
  resets/timeouts are retried a bounded number of times with exponential
  backoff and full jitter, then raised as ``TransientError`` naming the
  endpoint;
* a 401 makes it ask ``token_provider`` for a fresh token once, then raise
  ``ConfigError`` naming RUNESHIFT_SHOPIFY_TOKEN;
* the token is put in exactly one header and never logged or put in an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from extract.shopify_throttle import CostThrottle, QueryCost, RestCallBucket
from runeshift.errors import ConfigError, FatalError, TransientError
from runeshift.settings import DEFAULT_SHOPIFY_API_VERSION, Settings

log = logging.getLogger(__name__)

TOKEN_SETTING = "RUNESHIFT_SHOPIFY_TOKEN"
TOKEN_HEADER = "X-Shopify-Access-Token"
_LINK_PART = re.compile(r'<([^>]+)>\s*;\s*rel="?([A-Za-z]+)"?')
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 520, 522, 524})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter (AWS architecture blog style)."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass
class ClientStats:
    """What the client did; tests and benchmarks read these."""

    requests: int = 0
    graphql_queries: int = 0
    throttled: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    token_refreshes: int = 0
    requested_cost: float = 0.0
    actual_cost: float = 0.0
    paced_seconds: float = 0.0
    backoff_seconds: float = 0.0

    def count_retry(self, reason: str) -> None:
        self.retries[reason] = self.retries.get(reason, 0) + 1


@dataclass(frozen=True)
class GraphQLResponse:
    """``data`` of a successful query and its cost report."""

    data: dict[str, Any]
    cost: QueryCost
    errors: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class RestPage:
    """One page of a REST list endpoint."""

    body: dict[str, Any]
    next_url: str | None


class ShopifyClient:
    """GraphQL and REST access to one shop's Admin API at a pinned version."""

    def __init__(
        self,
        base_url: str,
        token_provider: Callable[[], str],
        api_version: str = DEFAULT_SHOPIFY_API_VERSION,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        throttle: CostThrottle | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError(
                "setting 'shopify_base_url' is not set; set RUNESHIFT_SHOPIFY_BASE_URL "
                "to https://<shop>.myshopify.com (or the fake server's URL)"
            )
        if not re.fullmatch(r"\d{4}-\d{2}|unstable", api_version):
            raise ConfigError(
                f"shopify_api_version {api_version!r} is not YYYY-MM or 'unstable'; "
                "set RUNESHIFT_SHOPIFY_API_VERSION"
            )
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self._token_provider = token_provider
        self._token: str | None = None
        self._timeout = urllib3.Timeout(connect=min(10.0, timeout), read=timeout)
        self._retry = retry or RetryPolicy()
        self.throttle = throttle or CostThrottle()
        self.rest_bucket = RestCallBucket()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=4, retries=False)
        self.stats = ClientStats()
        self.served_api_version: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ShopifyClient:
        """Build a client from ``shopify_base_url``/``shopify_token``/``shopify_api_version``."""
        base_url = settings.require("shopify_base_url")
        settings.require("shopify_token")
        token = settings.shopify_token
        return cls(base_url, token.reveal, settings.shopify_api_version, **kwargs)

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/admin/api/{self.api_version}/graphql.json"

    def rest_url(self, resource: str) -> str:
        """Absolute URL of a REST resource such as ``orders.json``."""
        return f"{self.base_url}/admin/api/{self.api_version}/{resource.lstrip('/')}"

    def close(self) -> None:
        self._pool.clear()

    # GraphQL ---------------------------------------------------------------

    def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        allow_partial: bool = False,
    ) -> GraphQLResponse:
        """Run one GraphQL query or mutation, paced and retried.

        Raises:
            TransientError: still throttled/failing after the retry budget.
            ConfigError: the token is rejected or lacks a scope (ACCESS_DENIED).
            FatalError: the query itself is wrong (GraphQL errors other than
                THROTTLED), or data came back with errors and ``allow_partial``
                is False: partial data is never returned silently.
        """
        key = _query_key(query, variables)
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        endpoint = f"POST {urlsplit(self.graphql_url).path}"
        for attempt in range(1, self._retry.max_attempts + 1):
            wait = self.throttle.wait_before(key)
            if wait > 0:
                self.stats.paced_seconds += wait
                self._sleep(wait)
            payload = self._request_json("POST", self.graphql_url, body=body, endpoint=endpoint)
            self.stats.graphql_queries += 1
            cost = QueryCost.from_extensions(payload.get("extensions"))
            self.throttle.observe(key, cost)
            errors = tuple(payload.get("errors") or ())
            if _is_throttled(errors):
                self.stats.throttled += 1
                if attempt == self._retry.max_attempts:
                    break
                self.stats.count_retry("THROTTLED")
                delay = self.throttle.wait_after_throttled(key)
                if delay <= 0:
                    delay = self._retry.delay(attempt, self._rng)
                self._backoff(delay)
                continue
            if cost.requested is not None:
                self.stats.requested_cost += cost.requested
            if cost.actual is not None:
                self.stats.actual_cost += cost.actual
            data = payload.get("data")
            if errors:
                _raise_for_graphql_errors(errors, endpoint, has_data=data is not None)
                if not allow_partial:
                    raise FatalError(
                        f"{endpoint}: Shopify returned data together with errors "
                        f"{_error_summary(errors)}; refusing partial data"
                    )
            if not isinstance(data, dict):
                raise FatalError(f"{endpoint}: response has neither data nor errors")
            return GraphQLResponse(data=data, cost=cost, errors=errors)
        raise TransientError(
            f"{endpoint}: still THROTTLED after {self._retry.max_attempts} attempts; "
            "another app may be using this shop's cost bucket"
        )

    # REST ------------------------------------------------------------------

    def rest_pages(
        self, resource: str, params: Mapping[str, str] | None = None
    ) -> Iterator[RestPage]:
        """Every page of a REST list, following ``link: <...>; rel="next"``.

        Shopify's ``page_info`` cursors refuse any companion parameter except
        ``limit``/``fields``, so the filters go on the first request only and
        later requests use the next URL exactly as given.
        """
        url = self.rest_url(resource)
        if params:
            url += "?" + urlencode(dict(params))
        endpoint = f"GET {urlsplit(url).path}"
        next_url: str | None = url
        while next_url is not None:
            wait = self.rest_bucket.wait_before()
            if wait > 0:
                self.stats.paced_seconds += wait
                self._sleep(wait)
            response = self._request("GET", next_url, endpoint=endpoint)
            self.rest_bucket.observe(response.headers.get("x-shopify-shop-api-call-limit"))
            body = _decode_json(response.data, endpoint)
            next_url = parse_link_header(response.headers.get("link")).get("next")
            yield RestPage(body=body, next_url=next_url)

    # Bulk result download ----------------------------------------------------

    def download_lines(self, url: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """Stream a bulk result file line by line (bounded memory).

        The URL is a signed storage link: no Shopify token is sent to it. A
        connection that breaks mid-file is reopened and the bytes already
        handed over are skipped, so every line is yielded exactly once.
        """
        endpoint = f"GET {urlsplit(url).path}"
        delivered = 0
        for attempt in range(1, self._retry.max_attempts + 1):
            response = self._request("GET", url, endpoint=endpoint, auth=False, stream=True)
            position = 0
            pending = b""
            try:
                for chunk in response.stream(chunk_size, decode_content=True):
                    if position + len(chunk) <= delivered:
                        position += len(chunk)
                        continue
                    if position < delivered:
                        chunk = chunk[delivered - position :]
                        position = delivered
                    position += len(chunk)
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        delivered += len(line) + 1
                        yield line
                if pending:
                    delivered += len(pending)
                    yield pending
                return
            except (Urllib3Error, OSError) as exc:
                self.stats.count_retry(type(exc).__name__)
                if attempt == self._retry.max_attempts:
                    raise TransientError(
                        f"{endpoint}: download broke {attempt} times ({type(exc).__name__}); "
                        "the bulk result URL stays valid for 7 days, rerun to resume"
                    ) from exc
                self._backoff(self._retry.delay(attempt, self._rng))
            finally:
                response.release_conn()
        raise TransientError(f"{endpoint}: download did not complete")  # pragma: no cover

    # Transport ---------------------------------------------------------------

    def _request_json(self, method: str, url: str, *, body: bytes, endpoint: str) -> dict[str, Any]:
        for attempt in range(1, self._retry.max_attempts + 1):
            response = self._request(method, url, body=body, endpoint=endpoint)
            try:
                return _decode_json(response.data, endpoint)
            except TransientError:
                # A truncated body is a broken connection in disguise.
                self.stats.count_retry("invalid_json")
                if attempt == self._retry.max_attempts:
                    raise
                self._backoff(self._retry.delay(attempt, self._rng))
        raise TransientError(f"{endpoint}: no valid JSON")  # pragma: no cover

    def _request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        body: bytes | None = None,
        auth: bool = True,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        refreshed = False
        last_problem = "no attempt made"
        attempt = 0
        while attempt < self._retry.max_attempts:
            attempt += 1
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            if auth:
                headers[TOKEN_HEADER] = self._current_token()
            self.stats.requests += 1
            try:
                response = self._pool.request(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    timeout=self._timeout,
                    preload_content=not stream,
                    redirect=not auth,
                )
            except (Urllib3Error, OSError) as exc:
                last_problem = f"{type(exc).__name__}: {_strip_token(str(exc))}"
                self.stats.count_retry("connection")
                if attempt < self._retry.max_attempts:
                    self._backoff(self._retry.delay(attempt, self._rng))
                continue
            self._note_version(response)
            status = response.status
            if status == 401 and auth:
                _drain(response)
                if refreshed:
                    raise ConfigError(
                        f"{endpoint}: Shopify rejected the access token (401) even after "
                        f"asking for a fresh one; set {TOKEN_SETTING} to a valid Admin API token"
                    )
                refreshed = True
                self._token = None
                self.stats.token_refreshes += 1
                attempt -= 1  # a refresh is not a failed attempt
                continue
            if status in _RETRYABLE_STATUS:
                retry_after = _retry_after(response.headers.get("retry-after"))
                _drain(response)
                last_problem = f"HTTP {status}"
                self.stats.count_retry(str(status))
                if attempt < self._retry.max_attempts:
                    delay = self._retry.delay(attempt, self._rng)
                    self._backoff(max(delay, retry_after or 0.0))
                continue
            if status == 403:
                _drain(response)
                raise ConfigError(
                    f"{endpoint}: 403 Forbidden; the token in {TOKEN_SETTING} lacks the "
                    "read scope for this resource (e.g. read_orders, read_all_orders)"
                )
            if status >= 400:
                text = response.data[:300].decode("utf-8", "replace") if not stream else ""
                _drain(response)
                raise FatalError(f"{endpoint}: HTTP {status} {_strip_token(text)}".rstrip())
            return response
        raise TransientError(
            f"{endpoint}: failed {self._retry.max_attempts} times, last: {last_problem}; "
            "Shopify or the network is unavailable, retry later"
        )

    def _current_token(self) -> str:
        if self._token is None:
            token = self._token_provider()
            if not token:
                raise ConfigError(f"no Shopify access token; set {TOKEN_SETTING}")
            self._token = token
        return self._token

    def _backoff(self, seconds: float) -> None:
        self.stats.backoff_seconds += seconds
        self._sleep(seconds)

    def _note_version(self, response: urllib3.BaseHTTPResponse) -> None:
        served = response.headers.get("x-shopify-api-version")
        if served and served != self.served_api_version:
            self.served_api_version = served
            if served != self.api_version:
                log.warning(
                    "Shopify served API version %s although %s is pinned (fall-forward); "
                    "re-test the extractor against %s",
                    served,
                    self.api_version,
                    served,
                )


def parse_link_header(value: str | None) -> dict[str, str]:
    """``{"next": url, "previous": url}`` from a (lower- or mixed-case) link header."""
    if not value:
        return {}
    return {rel.lower(): url for url, rel in _LINK_PART.findall(value)}


def _query_key(query: str, variables: Mapping[str, Any] | None) -> str:
    # Cost depends on the query text and on page sizes, not on cursors.
    sizes = sorted((k, v) for k, v in (variables or {}).items() if isinstance(v, int))
    return hashlib.sha1(f"{query}|{sizes}".encode()).hexdigest()


def _is_throttled(errors: tuple[dict[str, Any], ...]) -> bool:
    return any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors)


def _raise_for_graphql_errors(
    errors: tuple[dict[str, Any], ...], endpoint: str, *, has_data: bool
) -> None:
    codes = {(e.get("extensions") or {}).get("code") for e in errors}
    if "ACCESS_DENIED" in codes:
        raise ConfigError(
            f"{endpoint}: ACCESS_DENIED {_error_summary(errors)}; grant the token in "
            f"{TOKEN_SETTING} the missing read scope"
        )
    if "MAX_COST_EXCEEDED" in codes:
        raise FatalError(f"{endpoint}: query too expensive {_error_summary(errors)}; lower first:")
    if "INTERNAL_SERVER_ERROR" in codes:
        raise TransientError(f"{endpoint}: Shopify internal error {_error_summary(errors)}")
    if not has_data:
        raise FatalError(f"{endpoint}: GraphQL errors {_error_summary(errors)}")


def _error_summary(errors: tuple[dict[str, Any], ...]) -> str:
    return "; ".join(str(e.get("message", e))[:200] for e in errors[:3])


def _decode_json(raw: bytes, endpoint: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise TransientError(f"{endpoint}: response is not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise TransientError(f"{endpoint}: response is not a JSON object")
    return payload


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _drain(response: urllib3.BaseHTTPResponse) -> None:
    with contextlib.suppress(Urllib3Error, OSError):
        response.drain_conn()
    response.release_conn()


def _strip_token(text: str) -> str:
    return re.sub(r"shp[a-z]{2}_[0-9a-fA-F]+", "shp***", text)
