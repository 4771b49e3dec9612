"""The `mmctr` command line. Thin: each subcommand lives in `mmctr.commands.<name>`, which defines
`add_parser(subparsers)` and `run(args) -> int`; this file only lists them and dispatches."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# One explicit list of subcommands, in the order `mmctr --help` shows them: the whole pipeline
# first, then its steps in the order a user runs them, then the tools around them.
COMMANDS = (
    "demo",
    "synth",
    "data",
    "embed",
    "train",
    "distill",
    "prune",
    "quantize",
    "predict",
    "score",
    "models",
    "bench",
    "retrieval",
    "serve",
    "loadtest",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    from mmctr import __version__

    parser = argparse.ArgumentParser(
        prog="mmctr",
        description="Multimodal CTR prediction (Track 2: item embeddings, CTR models) and multimodal "
        "document retrieval (Track 1) for the WWW 2025 EReL@MIR challenge.",
        epilog="`mmctr COMMAND --help` describes a command. Start with `mmctr demo`.",
    )
    parser.add_argument("--version", action="version", version=f"mmctr {__version__}")
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


# How a full disk or a file-size limit shows itself: an OSError with one of these numbers, or, from
# libraries that wrap it (pyarrow, safetensors, torch), an error whose text carries the system's words.
_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_FULL_WORDS = (
    "No space left on device",
    "File too large",
    "Disk quota exceeded",
    "FileTooLarge",
    "StorageFull",
)


def _disk_full(err: BaseException) -> str | None:
    """A short description when `err` (or an error it was raised from) is a full disk, else None."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            where = f"{e.filename}: " if e.filename else ""
            return f"{where}{os.strerror(e.errno)}"
        text = str(e)
        for words in _FULL_WORDS:
            if words in text:
                return words
        e = e.__cause__ or e.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    from mmctr.errors import MMCTRError

    args = build_parser().parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # what a launcher (--nproc) runs again
    try:
        return int(args._run(args) or 0)
    except MMCTRError as err:
        print(f"mmctr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (`mmctr ... | head`): not an error of ours. Point
        # stdout at devnull so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        full = _disk_full(err)
        if full is None:
            raise
        print(
            f"mmctr {args.command}: error: no space left to write ({full}); the output was not written "
            "(no half-written file is left): free some space or choose another --out, then run again",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
