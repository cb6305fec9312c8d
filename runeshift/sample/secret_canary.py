"""The marker embedded in every generated secret (password hashes, salts, session tokens).

Later tests grep Postgres, staging files, logs and reports for it: finding it anywhere outside
the legacy MySQL databases proves a secret leaked.
"""

from __future__ import annotations

SECRET_CANARY = "rs-canary-"
