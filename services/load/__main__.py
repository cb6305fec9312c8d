"""``python -m services.load --url URL --rate N --ids IDS.json --out OUT.json [--seed S]``.

The child side of :class:`services.load.load_process.LoadProcess`: sends ``N`` requests/s to
``URL`` with ids from ``IDS.json``, prints ``started <wall-clock time>`` once sending, and
stops when its stdin closes; then writes the summary and every outcome to ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.load.load_generator import LoadGenerator
from services.load.load_process import read_ids, results_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.load", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--ids", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    load = LoadGenerator(args.url, args.rate, read_ids(args.ids), seed=args.seed).start()
    sys.stdout.write(f"started {load.started_wall!r}\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes it (stop) or exits
    summary = load.stop()
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(results_json(summary, load.outcomes, load.acknowledged, load.started_wall))
    )
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
