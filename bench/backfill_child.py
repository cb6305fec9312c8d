"""Subprocess entry of the backfill benchmark: one backfill of the named tables, JSON on stdout.

It runs in its own process so the benchmark can measure its peak RSS alone, and so
``python -m cProfile`` can wrap it unchanged.
"""

from __future__ import annotations

import json
import sys

from runeshift.arrow_runtime import keep_pandas_out_of_pyarrow
from runeshift.backfill import run_backfill
from runeshift.settings import load_settings


def main(tables: list[str]) -> int:
    keep_pandas_out_of_pyarrow()  # as `runeshift backfill` does
    result = run_backfill(load_settings(), tables=tables)
    json.dump(result.as_dict(), sys.stdout)
    return 0 if result.balanced else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
