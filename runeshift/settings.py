"""Effective settings: defaults < sandbox state < ``runeshift.toml`` < ``RUNESHIFT_*`` env.

Every command reads its connections from here. The sandbox writes the URLs of
the servers it started to ``<home>/sandbox/state.json``; a ``runeshift.toml``
(or the file named by ``RUNESHIFT_CONFIG``) overrides them, and environment
variables override both. ``Settings.describe()`` reports each value with where
it came from, with passwords and tokens masked.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from runeshift.errors import ConfigError
from runeshift.secrets import Secret, mask_url

Origin = Literal["default", "sandbox", "file", "env"]

ENV_PREFIX = "RUNESHIFT_"
DEFAULT_SHOPIFY_API_VERSION = "2025-07"


def runeshift_home() -> Path:
    """The project-local folder for state: sandbox servers, staging, reports."""
    return Path(os.environ.get("RUNESHIFT_HOME", ".runeshift")).resolve()


@dataclass(frozen=True)
class Settings:
    """Where the sources, the target and the staging area are."""

    forums_url: str = ""
    repo_url: str = ""
    postgres_url: str = ""
    staging: str = ""
    s3_endpoint_url: str = ""
    shopify_base_url: str = ""
    shopify_token: Secret = field(default_factory=lambda: Secret(""))
    shopify_api_version: str = DEFAULT_SHOPIFY_API_VERSION
    # The app's client secret: Shopify signs webhook deliveries with it (HMAC-SHA256).
    shopify_webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    home: Path = field(default_factory=runeshift_home)
    origins: dict[str, Origin] = field(default_factory=dict, compare=False)

    def require(self, name: str) -> str:
        """The value of setting ``name``, or a ConfigError saying how to set it."""
        value = getattr(self, name)
        text = value.reveal() if isinstance(value, Secret) else str(value)
        if not text:
            env = ENV_PREFIX + name.upper()
            raise ConfigError(
                f"setting '{name}' is not set; run 'runeshift sandbox up', set {env}, "
                f"or add '{name} = ...' to runeshift.toml"
            )
        return text

    def describe(self) -> list[tuple[str, str, Origin]]:
        """(name, printable value, origin) for every setting, secrets masked."""
        rows: list[tuple[str, str, Origin]] = []
        for f in fields(self):
            if f.name == "origins":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                shown = str(value)
            elif f.name.endswith("_url") or f.name == "staging":
                shown = mask_url(str(value))
            else:
                shown = str(value)
            rows.append((f.name, shown, self.origins.get(f.name, "default")))
        return rows


_SETTING_NAMES = (
    "forums_url",
    "repo_url",
    "postgres_url",
    "staging",
    "s3_endpoint_url",
    "shopify_base_url",
    "shopify_token",
    "shopify_api_version",
    "shopify_webhook_secret",
)


def _config_file() -> Path | None:
    explicit = os.environ.get("RUNESHIFT_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"RUNESHIFT_CONFIG names {path}, which does not exist")
        return path
    local = Path("runeshift.toml")
    return local if local.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the line it names") from exc
    section = data.get("runeshift", data)
    unknown = sorted(set(section) - set(_SETTING_NAMES))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; "
            f"known settings are {', '.join(_SETTING_NAMES)}"
        )
    return dict(section)


def sandbox_state_path(home: Path) -> Path:
    return home / "sandbox" / "state.json"


def _read_sandbox(home: Path) -> dict[str, Any]:
    path = sandbox_state_path(home)
    if not path.is_file():
        return {}
    state = json.loads(path.read_text())
    urls: dict[str, Any] = state.get("settings", {})
    return urls


def load_settings() -> Settings:
    """Build the effective settings from every source, later sources winning."""
    home = runeshift_home()
    values: dict[str, Any] = {"staging": str(home / "staging")}
    origins: dict[str, Origin] = {}
    layers: list[tuple[Origin, dict[str, Any]]] = [("sandbox", _read_sandbox(home))]
    config = _config_file()
    if config is not None:
        layers.append(("file", _read_toml(config)))
    env = {
        name: os.environ[ENV_PREFIX + name.upper()]
        for name in _SETTING_NAMES
        if ENV_PREFIX + name.upper() in os.environ
    }
    layers.append(("env", env))
    for origin, layer in layers:
        for name, value in layer.items():
            if name in _SETTING_NAMES and value not in (None, ""):
                values[name] = str(value)
                origins[name] = origin
    token = Secret(values.pop("shopify_token", ""))
    webhook_secret = Secret(values.pop("shopify_webhook_secret", ""))
    return Settings(
        **values,
        shopify_token=token,
        shopify_webhook_secret=webhook_secret,
        home=home,
        origins=origins,
    )
