"""Faults the fake injects on request: HTTP errors, resets, slowness, failed bulk operations.

A rule fires on the Nth API request counted from the server start (``at``), or on every
request from then on (``repeat``); ``path`` narrows it to ``graphql`` or ``rest`` requests.
Rules are written ``ACTION@N[:path]`` on the command line (``503@3``, ``reset@5:graphql``,
``429@2``, ``slow@4``) and as JSON on ``POST /__fake__/faults``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from services.fake_shopify.bulk_operations import ErrorCode

Action = Literal["500", "502", "503", "429", "reset", "slow", "invalid-json"]
ACTIONS: tuple[str, ...] = ("500", "502", "503", "429", "reset", "slow", "invalid-json")
BULK_ERRORS: tuple[str, ...] = ("INTERNAL_SERVER_ERROR", "TIMEOUT", "ACCESS_DENIED")


@dataclass(frozen=True)
class FaultRule:
    action: Action
    at: int
    path: Literal["graphql", "rest", "any"] = "any"
    repeat: bool = False
    retry_after: float | None = 1.0
    slow_seconds: float = 5.0

    def matches(self, seq: int, api: str) -> bool:
        if self.path != "any" and self.path != api:
            return False
        return seq >= self.at if self.repeat else seq == self.at


def parse_rule(text: str) -> FaultRule:
    """``503@3``, ``reset@5:graphql``, ``429@2:rest`` -> a rule; ValueError names the format."""
    spec, _, path = text.partition(":")
    action, _, at = spec.partition("@")
    if action not in ACTIONS or not at.isdigit() or path not in ("", "graphql", "rest", "any"):
        raise ValueError(
            f"fault {text!r}: expected ACTION@N[:graphql|rest], ACTION one of {', '.join(ACTIONS)}"
        )
    return FaultRule(action, int(at), path or "any")  # type: ignore[arg-type]


def rule_from_json(payload: dict[str, Any]) -> FaultRule:
    rule = parse_rule(f"{payload['action']}@{int(payload['at'])}:{payload.get('path', 'any')}")
    return FaultRule(
        rule.action,
        rule.at,
        rule.path,
        bool(payload.get("repeat", False)),
        payload.get("retry_after", 1.0),
        float(payload.get("slow_seconds", 5.0)),
    )


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def pick(self, seq: int, api: str) -> FaultRule | None:
        """The rule for this request, if any; one-shot rules are used up."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(seq, api):
                    if not rule.repeat:
                        self.rules.remove(rule)
                    return rule
        return None

    def as_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"action": r.action, "at": r.at, "path": r.path, "repeat": r.repeat}
                for r in self.rules
            ]


def bulk_error(text: str) -> ErrorCode:
    if text not in BULK_ERRORS:
        raise ValueError(f"bulk failure {text!r}: expected one of {', '.join(BULK_ERRORS)}")
    return text  # type: ignore[return-value]
