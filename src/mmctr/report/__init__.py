"""`mmctr report`: one self-contained HTML page of runs, benchmarks, embeddings and retrieval results.

collect.py  what each input is (decided by its files) and its typed record
misses.py   Track 1's missed queries, from a submission CSV and the truth
plots.py    the figures (matplotlib, PNG)
html.py     the page: tables, figures and a small inline script, no network
"""

from __future__ import annotations

import os
from pathlib import Path

from mmctr.outputs import OutputKind, check_out, temp_beside

__all__ = ["REPORT_HTML", "write_report"]


def _is_report(path: Path) -> bool:
    """An earlier output of `mmctr report`: an HTML file whose head names it as the generator."""
    from mmctr.report.html import GENERATOR

    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(512)
    return f'content="{GENERATOR}"'.encode() in head


REPORT_HTML = OutputKind("report written by `mmctr report`", _is_report, is_dir=False)


def write_report(paths: list[Path], out: Path, title: str | None = None, overwrite: bool = False) -> Path:
    """Read every input of `paths` (see `mmctr.report.collect.KINDS`), write the page to `out`
    (a temporary file beside it, renamed into place) and return `out`. An existing `out` is
    replaced only with `overwrite` and only when it is an earlier report."""
    from mmctr.report.collect import KINDS, collect, expand
    from mmctr.report.html import render

    out = Path(out)
    check_out(out, REPORT_HTML, overwrite)
    paths = [Path(p) for p in paths]
    sources = [(KINDS[k].split(":")[0].split(" (")[0], p) for k, p in expand(paths)]
    inputs = collect(paths)
    page = render(inputs, title or "mmctr report", sources)
    tmp = temp_beside(out)
    try:
        tmp.write_text(page, encoding="utf-8")
        check_out(out, REPORT_HTML, overwrite)  # again: it may have appeared while we worked
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
