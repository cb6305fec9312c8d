"""Access tokens from Shopify's client-credentials grant, for ``ShopifyClient(token_provider=...)``.

Apps created in a Shopify organisation since 2026 get no permanent ``shpat_``
token; they exchange their client id and secret for a token that expires after
24 hours (``POST <shop>/admin/oauth/access_token``, grant_type
``client_credentials``). ``ShopifyClient`` asks its provider for a token on
first use and again after a 401, so a provider that performs a fresh grant on
every call is all the refresh logic there is. A static token (the
``shopify_token`` setting) is the simpler provider: ``settings.shopify_token.reveal``.
"""

from __future__ import annotations

import json

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from runeshift.errors import ConfigError, TransientError
from runeshift.secrets import Secret


class ClientCredentialsTokenProvider:
    """Calls the client-credentials grant each time a token is needed."""

    def __init__(
        self, base_url: str, client_id: str, client_secret: Secret, *, timeout: float = 30.0
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/admin/oauth/access_token"
        self._client_id = client_id
        self._secret = client_secret
        self._pool = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.5))
        self._timeout = timeout
        self.grants = 0

    def __call__(self) -> str:
        body = json.dumps(
            {
                "client_id": self._client_id,
                "client_secret": self._secret.reveal(),
                "grant_type": "client_credentials",
            }
        ).encode()
        try:
            response = self._pool.request(
                "POST",
                self._url,
                body=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=self._timeout,
            )
        except (Urllib3Error, OSError) as exc:
            raise TransientError(
                f"POST /admin/oauth/access_token: {type(exc).__name__}; retry later"
            ) from exc
        if response.status in (400, 401, 403):
            raise ConfigError(
                f"POST /admin/oauth/access_token: HTTP {response.status}; Shopify refused the "
                f"client credentials of app {self._client_id!r}; check the client id and secret"
            )
        if response.status != 200:
            raise TransientError(f"POST /admin/oauth/access_token: HTTP {response.status}")
        try:
            token = json.loads(response.data)["access_token"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientError(
                "POST /admin/oauth/access_token: no access_token in the answer"
            ) from exc
        self.grants += 1
        return str(token)
