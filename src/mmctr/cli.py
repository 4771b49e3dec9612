"""The `mmctr` command line. Thin: each subcommand lives in `mmctr.commands.<name>`, which defines
`add_parser(subparsers)` and `run(args) -> int`; this file only lists them and dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

# One explicit list of subcommands, in the order `mmctr --help` shows them.
COMMANDS = ("synth", "train", "predict", "score", "demo", "embed", "models", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmctr", description="Multimodal CTR prediction for the MicroLens-1M MMCTR format."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mmctr.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"mmctr.commands.{name}":
                continue  # command not built yet
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mmctr.errors import MMCTRError

    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except MMCTRError as err:
        print(f"mmctr {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
