"""Moved into the package: `mmctr bench --track1 --data DATA --out DIR [...]` (mmctr.bench.retrieval).

This wrapper keeps the old command line working: DATA first, then the options of
`mmctr bench --track1` (see `mmctr bench --help`).

    python scripts/bench_retrieval.py T1_DATA --out WORK/t1_bench --retrievers bm25 dense
"""

from __future__ import annotations

import sys

from mmctr.cli import main


def translate(argv: list[str]) -> list[str]:
    """`DATA [options]` -> `bench --track1 --data DATA [options]`."""
    if not argv or argv[0].startswith("-"):
        sys.exit(f"usage: python {sys.argv[0]} DATA --out DIR [options]  (now: mmctr bench --track1 --help)")
    return ["bench", "--track1", "--data", argv[0], *argv[1:]]


if __name__ == "__main__":
    sys.exit(main(translate(sys.argv[1:])))
