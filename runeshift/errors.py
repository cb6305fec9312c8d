"""The one exception tree of runeshift.

Subclasses say what the caller should do, not where the error came from: a
``ConfigError`` means "fix a setting or a file and run again", a
``SourceDataError`` means "quarantine this row and go on", a ``TransientError``
means "retry", and ``FatalError`` means "stop; a person has to look".
The CLI maps every ``RuneshiftError`` to exit code 2 with its message and no
traceback (unless ``--debug``).
"""

from __future__ import annotations


class RuneshiftError(Exception):
    """Root of every error runeshift raises on purpose."""


class ConfigError(RuneshiftError):
    """A setting, file or argument is wrong; the message names it and the fix."""


class MissingBinaryError(ConfigError):
    """A server binary the sandbox needs is not installed."""


class SourceDataError(RuneshiftError):
    """A source row cannot be migrated as it is; the row goes to quarantine."""

    def __init__(self, reason: str, *, rule: str = "unparseable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


class TransientError(RuneshiftError):
    """A retry may succeed (connection reset, throttled, lock timeout)."""


class FatalError(RuneshiftError):
    """Continuing could lose or corrupt data; stop and report."""
