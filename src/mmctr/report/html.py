"""The report page: one HTML string with its styles, scripts and images inline, so that it opens
from a laptop's disk with no network.

The inline script sorts tables when a header is clicked and shows item covers over the embedding
map; it records any error in the page (`#js-errors`) and sets `data-report-ok` on <body> once it
has run, which the browser test reads back.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.report import plots
from mmctr.report.collect import (
    Bench,
    Embedding,
    Inputs,
    Miss,
    Track1Result,
    Track1Row,
    Track2Run,
    _short,
    bench_config,
    finite,
)

GENERATOR = "mmctr report"  # <meta name="generator">: how an earlier report is recognised
MAP_POINTS = 3000  # most items drawn on an embedding map
MAP_THUMBS = 400  # most of them with a cover on hover
THUMB_PX = 64

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232b;background:#fafbfc}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}p.note,.note{color:#56606b;font-size:13px}
nav a{margin-right:14px;font-size:14px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #d5dbe2;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef2f6;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#9aa5b1;font-size:11px}
table.sortable th.asc:after{content:" \\25B2";color:#1d232b}table.sortable th.desc:after{content:" \\25BC";color:#1d232b}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.cfg{font-family:ui-monospace,Menlo,monospace;font-size:12px;max-width:360px}
img.plot{max-width:100%;height:auto;display:block;margin:6px 0;border:1px solid #e3e8ee;background:#fff}
.map{position:relative;display:inline-block;max-width:100%}
.map img{max-width:100%;height:auto;display:block;border:1px solid #e3e8ee;background:#fff}
.tip{position:absolute;display:none;pointer-events:none;background:#fff;border:1px solid #888;padding:4px;
 font-size:12px;box-shadow:0 2px 6px rgba(0,0,0,.25);max-width:240px;z-index:5}
.tip img{display:block;border:0;max-width:96px}
.gallery{display:grid;grid-template-columns:1.1fr 1fr 1fr;gap:8px 14px;align-items:start;margin:8px 0 18px}
.gallery div.cell{background:#fff;border:1px solid #e3e8ee;padding:6px;font-size:12px}
.gallery img{max-width:100%;display:block;margin-top:4px}
.gallery .head{font-weight:600;font-size:13px;background:none;border:0}
.kind{display:inline-block;background:#eef2f6;border-radius:3px;padding:0 4px;font-size:11px}
#js-errors{color:#b00020;white-space:pre-wrap}
"""

JS = r"""
(function(){
  var errs=document.getElementById('js-errors');
  window.onerror=function(msg,src,line){errs.textContent+='error: '+msg+' (line '+line+')\n';};
  function key(td){var v=td.getAttribute('data-v');if(v!==null&&v!==''&&!isNaN(+v))return +v;
    return td.textContent.trim().toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        var bad=function(v){return v===''||v==='\u2013';};
        if(bad(x)!==bad(y))return bad(x)?1:-1;
        if(typeof x!==typeof y){x=String(x);y=String(y);}
        return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});});});});
  document.querySelectorAll('.map').forEach(function(box){
    var data=JSON.parse(document.getElementById(box.getAttribute('data-points')).textContent);
    var img=box.querySelector('img'),tip=box.querySelector('.tip');
    img.addEventListener('mousemove',function(ev){
      var r=img.getBoundingClientRect(),s=data.width/r.width;
      var x=(ev.clientX-r.left)*s,y=(ev.clientY-r.top)*s,best=-1,bd=64;
      for(var i=0;i<data.points.length;i++){var p=data.points[i],dx=p[0]-x,dy=p[1]-y,d=dx*dx+dy*dy;
        if(d<bd){bd=d;best=i;}}
      if(best<0){tip.style.display='none';return;}
      var p=data.points[best];tip.textContent='';
      if(p[3]>=0){var im=document.createElement('img');im.src='data:image/jpeg;base64,'+data.thumbs[p[3]];tip.appendChild(im);}
      var t=document.createElement('div');t.textContent=p[2];tip.appendChild(t);
      tip.style.left=(ev.clientX-r.left+14)+'px';tip.style.top=(ev.clientY-r.top+14)+'px';tip.style.display='block';});
    img.addEventListener('mouseleave',function(){tip.style.display='none';});});
  document.body.setAttribute('data-report-ok','1');
})();
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(x: Any, fmt: str = ",.0f") -> str:
    return format(x, fmt) if finite(x) else "–"


def img_tag(png: bytes | None, alt: str, cls: str = "plot") -> str:
    if png is None:
        return ""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def _jpeg_tag(data: bytes | None, alt: str) -> str:
    if not data:
        return '<div class="note">(no image)</div>'
    return f'<img alt="{esc(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data).decode("ascii")}">'


# ----------------------------------------------------------------------------------------------
# tables


class Cell:
    """A table cell: its text, and the value it sorts by (numbers sort as numbers)."""

    def __init__(self, text: Any, sort: Any = None, cls: str = ""):
        self.text, self.sort, self.cls = str(text), sort, cls

    def html(self) -> str:
        v = f' data-v="{esc(self.sort)}"' if self.sort is not None and finite(self.sort) else ""
        c = f' class="{self.cls}"' if self.cls else ""
        return f"<td{c}{v}>{esc(self.text)}</td>"


def numcell(x: Any, fmt: str = ",.0f") -> Cell:
    return Cell(num(x, fmt), x if finite(x) else None, "num")


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Cell]], ident: str = "", sortable: bool = True
) -> str:
    cls = ' class="sortable"' if sortable else ""
    i = f' id="{ident}"' if ident else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(c.html() for c in r) + "</tr>" for r in rows)
    return f"<table{i}{cls}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


SUMMARY_HEADERS = (
    "run",
    "source",
    "model",
    "data",
    "config differences from defaults",
    "valid AUC",
    "gap to oracle AUC",
    "params",
    "train samples/s",
    "request p50 ms",
    "request p99 ms",
)


def _run_row(r: Track2Run) -> list[Cell]:
    m = r.metrics
    gap = m["oracle_valid_auc"] - m["valid_auc"] if finite(m.get("oracle_valid_auc")) else None
    return [
        Cell(r.name),
        Cell("mmctr train"),
        Cell(r.model),
        Cell(r.data),
        Cell("; ".join(r.config_diff) or "(defaults)", cls="cfg"),
        numcell(m.get("valid_auc"), ".4f"),
        numcell(gap, ".4f"),
        numcell(m.get("params")),
        numcell(m.get("train_samples_per_s")),
        Cell("–"),
        Cell("–"),
    ]


def _bench_data(b: Bench) -> str:
    data = b.meta.get("data")
    if data:
        return _short(str(data))
    first = b.records[0] if b.records else {}
    return f"{num(first.get('train_rows'))} train rows" if first.get("train_rows") else "?"


def _bench_rows(b: Bench) -> list[list[Cell]]:
    rows = []
    for rec in b.records:
        gap = rec["oracle_valid_auc"] - rec["valid_auc"] if finite(rec.get("oracle_valid_auc")) else None
        rows.append(
            [
                Cell(rec.get("system", "?")),
                Cell(f"bench {b.name}" + (" (peer)" if rec.get("family") not in (None, "mmctr") else "")),
                Cell(rec.get("model", "?")),
                Cell(_bench_data(b)),
                Cell(bench_config(rec) or "(defaults)", cls="cfg"),
                numcell(rec.get("valid_auc"), ".4f"),
                numcell(gap, ".4f"),
                numcell(rec.get("params")),
                numcell(rec.get("train_samples_per_s")),
                numcell(rec.get("infer_p50_ms"), ".2f"),
                numcell(rec.get("infer_p99_ms"), ".2f"),
            ]
        )
    return rows


def summary_section(inputs: Inputs) -> str:
    rows = [_run_row(r) for r in inputs.track2_runs]
    for b in inputs.benches:
        rows += _bench_rows(b)
    if not rows:
        return ""
    return (
        '<h2 id="summary">Track 2 runs</h2>'
        + table(SUMMARY_HEADERS, rows, "summary-table")
        + '<p class="note">Click a header to sort. Gap to oracle: AUC of the generator\'s true click '
        "probability minus the run's valid AUC (only for generated data). Samples/s: training "
        "throughput; request latency (one user's history + candidates, 1 thread) is measured only "
        "by <code>mmctr bench</code>. Config differences: against the model's defaults "
        "(configs/&lt;model&gt;.yaml and the training defaults); for bench systems, the variant in "
        "the system's name.</p>"
    )


# ----------------------------------------------------------------------------------------------
# figures


def curves_section(inputs: Inputs) -> str:
    parts = []
    png = plots.learning_curves(inputs.track2_runs)
    if png:
        parts.append("<h3>Track 2 runs</h3>" + img_tag(png, "learning curves of the Track 2 runs"))
    png = plots.track1_learning_curves(inputs.track1_runs)
    if png:
        parts.append(
            "<h3>Track 1 trained retrievers</h3>" + img_tag(png, "learning curves of the Track 1 runs")
        )
    if not parts:
        return ""
    return '<h2 id="curves">Learning curves</h2>' + "".join(parts)


def _per_million(samples_per_s: Any) -> float | None:
    return 1e6 / samples_per_s if finite(samples_per_s) and samples_per_s > 0 else None


def track2_points(inputs: Inputs) -> dict[str, list[plots.Point]]:
    """Points of the AUC frontier, grouped by data set (AUCs compare only on one data set)."""
    groups: dict[str, list[plots.Point]] = {}
    for b in inputs.benches:
        for rec in b.records:
            peer = rec.get("family") not in (None, "mmctr")
            groups.setdefault(_bench_data(b), []).append(
                plots.Point(
                    str(rec.get("system", "?")).removeprefix("mmctr/"),
                    "peer (bench)" if peer else "mmctr (bench)",
                    rec.get("valid_auc", float("nan")),
                    rec.get("infer_p99_ms"),
                    _per_million(rec.get("train_samples_per_s")),
                )
            )
    for r in inputs.track2_runs:
        groups.setdefault(r.data, []).append(
            plots.Point(
                r.name,
                "mmctr run",
                r.metrics.get("valid_auc", float("nan")),
                None,
                _per_million(r.metrics.get("train_samples_per_s")),
            )
        )
    return groups


def track1_points(inputs: Inputs) -> dict[str, list[plots.Point]]:
    groups: dict[str, list[plots.Point]] = {}
    for res in inputs.track1:
        if res.source != "bench":
            continue
        for row in res.rows:
            s = row.summary
            build = sum(c.get("index_seconds") or 0 for c in row.costs.values()) + 60 * (
                s.get("train_minutes") or 0
            )
            group = "index option" if row.kind == "index" else "retriever"
            if finite(s.get("train_minutes")) and s["train_minutes"] > 0:
                group = "trained retriever"
            groups.setdefault(res.name, []).append(
                plots.Point(
                    row.name.removeprefix("index:"),
                    group,
                    s.get("overall", float("nan")),
                    s.get("query_ms_p99"),
                    build or None,
                )
            )
    return groups


def frontier_section(inputs: Inputs) -> str:
    parts = []
    for data, pts in track2_points(inputs).items():
        png = plots.frontier(
            pts,
            f"Track 2 on {data}: valid AUC against cost",
            "valid AUC",
            "p99 request latency, ms (1 thread)",
            "training time per 1M samples, s",
        )
        parts.append(img_tag(png, f"AUC frontier on {data}"))
    for name, pts in track1_points(inputs).items():
        png = plots.frontier(
            pts,
            f"Track 1, {name}: overall score against cost",
            "Track 1 overall score (mean R@k, fraction)",
            "p99 query latency, ms (encode + search)",
            "build time: index + training, s",
        )
        parts.append(img_tag(png, f"Track 1 frontier of {name}"))
    if not parts:
        return ""
    return (
        '<h2 id="frontier">Efficiency against effectiveness</h2>'
        '<p class="note">One figure per data set: scores compare only on the same data. '
        "Red edge and red dashed steps: the Pareto front (lower cost, higher score). Runs of "
        "<code>mmctr train</code> carry no request latency; bench them for the left panel.</p>"
        + "".join(parts)
    )


# ----------------------------------------------------------------------------------------------
# embeddings


def _titles(data_root: Path | None) -> dict[int, str]:
    if data_root is None or not (data_root / "item_feature.parquet").is_file():
        return {}
    try:
        import pyarrow.parquet as pq

        t = pq.read_table(data_root / "item_feature.parquet", columns=["item_id", "item_title"])
    except Exception:  # titles only decorate the hover; a file without them is fine
        return {}
    return dict(zip(t.column("item_id").to_pylist(), t.column("item_title").to_pylist(), strict=True))


def _covers(data_root: Path | None, ids: Sequence[int]) -> dict[int, str]:
    """item id -> base64 JPEG thumbnail of its cover, for the ids that have one."""
    if data_root is None or not (data_root / "item_images").is_dir():
        return {}
    from mmctr.encoders.image import list_images
    from mmctr.errors import MMCTRError
    from mmctr.report.misses import thumbnail

    try:
        listing = list_images(data_root / "item_images")
    except MMCTRError:
        return {}
    out = {}
    for i in ids:
        p = listing.paths.get(int(i))
        data = thumbnail(p.read_bytes(), THUMB_PX) if p is not None else None
        if data:
            out[int(i)] = base64.b64encode(data).decode("ascii")
    return out


def embedding_block(e: Embedding, index: int) -> str:
    ids = np.flatnonzero(np.abs(e.emb).sum(axis=1) > 0)  # row 0 (padding) and empty rows out
    rng = np.random.default_rng(0)
    if len(ids) > MAP_POINTS:
        ids = np.sort(rng.choice(ids, MAP_POINTS, replace=False))
    if len(ids) < 3:
        return f"<h3>{esc(e.name)}</h3><p class='note'>{esc(e.path)}: fewer than 3 non-zero rows; no map.</p>"
    labels, order = plots.tag_colours(e.tags[ids])
    m = plots.embedding_map(e.emb[ids], labels, order, e.name)
    titles = _titles(e.data_root)
    with_thumb = ids if len(ids) <= MAP_THUMBS else np.sort(rng.choice(ids, MAP_THUMBS, replace=False))
    covers = _covers(e.data_root, with_thumb.tolist())
    thumbs, thumb_of = [], {}
    for i in with_thumb.tolist():
        if i in covers:
            thumb_of[i] = len(thumbs)
            thumbs.append(covers[i])
    points = []
    for (x, y), i in zip(m.xy_px, ids.tolist(), strict=True):
        tags = [int(t) for t in e.tags[i] if t > 0]
        text = f"item {i}" + (f": {titles[i]}" if titles.get(i) else "") + f" · tags {tags}"
        points.append([round(x, 1), round(y, 1), text, thumb_of.get(i, -1)])
    data = json.dumps({"width": m.width, "points": points, "thumbs": thumbs}).replace("</", "<\\/")
    pid = f"map-points-{index}"
    hover = "item id, title and cover" if thumbs else "item id and tags (no item_images/ found for covers)"
    return (
        f"<h3>{esc(e.name)}</h3>"
        f'<p class="note">{esc(e.path)} — hover a point for its {hover}.</p>'
        f'<div class="map" data-points="{pid}">{img_tag(m.png, "embedding map of " + e.name, "")}'
        f'<div class="tip"></div></div>'
        f'<script type="application/json" id="{pid}">{data}</script>'
    )


def _embed_table(embs: list[Embedding]) -> str:
    rows = []
    for e in embs:
        r = e.report or {}
        fusion = r.get("fusion") or {}
        enc = r.get("encoders") or {}
        encs = ", ".join(
            f"{k}: {v.get('spec') or v.get('encoder') or '?'}" for k, v in enc.items() if isinstance(v, dict)
        )
        sec = r.get("seconds") or {}
        rows.append(
            [
                Cell(e.name),
                Cell(fusion.get("name", "(no report beside the parquet)")),
                Cell(encs or "–"),
                numcell(r.get("items", len(e.emb) - 1)),
                numcell(e.emb.shape[1]),
                numcell(fusion.get("variance_kept"), ".3f"),
                numcell(sec.get("total"), ".1f"),
            ]
        )
    return table(("embedding", "fusion", "encoders", "items", "dim", "variance kept", "embed seconds"), rows)


def _task1_table(t) -> str:
    rows = []
    auc = t.table.get("auc") or {}
    for r in auc.get("rows") or []:
        gap = (
            r["oracle_valid_auc"] - r["valid_auc"]
            if finite(r.get("oracle_valid_auc")) and finite(r.get("valid_auc"))
            else None
        )
        rows.append(
            [
                Cell(r.get("row", "?")),
                numcell(r.get("valid_auc"), ".4f"),
                numcell(gap, ".4f"),
                numcell(r.get("cold_valid_auc"), ".4f"),
                numcell(r.get("variance_kept"), ".3f"),
                numcell(r.get("embed_seconds"), ".0f"),
            ]
        )
    note = f"data {auc.get('data', '?')}, {auc.get('epochs', '?')} epoch(s), seeds {auc.get('seeds', '?')}; DIN: {auc.get('din', '')}"
    return (
        f"<h3>Task 1 table: {esc(t.name)}</h3>"
        + table(
            ("embedding", "valid AUC", "gap to oracle", "cold-item valid AUC", "variance kept", "embed s"),
            rows,
        )
        + f'<p class="note">{esc(note)}</p>'
    )


def embedding_section(inputs: Inputs) -> str:
    if not inputs.embeddings and not inputs.task1_tables:
        return ""
    parts = ['<h2 id="embeddings">Item embeddings (Task 1)</h2>']
    if inputs.embeddings:
        parts.append(_embed_table(inputs.embeddings))
    parts += [embedding_block(e, i) for i, e in enumerate(inputs.embeddings)]
    parts += [_task1_table(t) for t in inputs.task1_tables]
    return "".join(parts)


# ----------------------------------------------------------------------------------------------
# Track 1


def _t1_row(res: Track1Result, row: Track1Row) -> list[Cell]:
    s = row.summary
    md, mk = row.scores.get("mmdocir") or {}, row.scores.get("m2kr") or {}
    return [
        Cell(row.name),
        Cell(f"{res.source} {res.name}"),
        numcell(s.get("overall"), ".4f"),
        numcell(md.get("score"), ".4f"),
        numcell(mk.get("score"), ".4f"),
        numcell(md.get("R@5"), ".3f"),
        numcell(mk.get("R@5"), ".3f"),
        numcell(s.get("query_ms_p50"), ".2f"),
        numcell(s.get("query_ms_p99"), ".2f"),
        numcell(s.get("bytes_per_page"), ",.0f"),
        numcell(s.get("train_minutes"), ".1f"),
    ]


T1_HEADERS = (
    "retriever",
    "source",
    "overall score",
    "MMDocIR score",
    "M2KR score",
    "MMDocIR R@5",
    "M2KR R@5",
    "query p50 ms",
    "query p99 ms",
    "index bytes/page",
    "train min",
)


def _gallery(res: Track1Result) -> str:
    if not res.misses:
        note = res.misses_note or "no question was missed entirely"
        return f'<p class="note">{esc(note)}</p>' if res.source == "demo" else ""
    k = 5 if res.rules != "draft" else 10
    parts = [
        f"<h3>Missed queries: {esc(res.name)}</h3>"
        f'<p class="note">Questions whose gold is in none of the {k} submitted ids ({esc(res.rules)} rules), '
        "a few of each kind; left the query, then the gold item, then the item ranked first.</p>"
    ]
    for task, label in (("mmdocir", "MMDocIR: question → page"), ("m2kr", "M2KR: image query → passage")):
        ms: list[Miss] = [m for m in res.misses if m.task == task]
        if not ms:
            continue
        parts.append(f"<h3>{esc(label)}</h3><div class='gallery'>")
        parts.append(
            "<div class='cell head'>query</div><div class='cell head'>gold</div><div class='cell head'>ranked first</div>"
        )
        for m in ms:
            q_img = _jpeg_tag(m.query_image, "query image") if m.query_image else ""
            parts.append(
                f"<div class='cell'><span class='kind'>{esc(m.kind or '?')}</span> q {esc(m.question_id)}: "
                f"{esc(m.question[:300])}{q_img}</div>"
                f"<div class='cell'>{esc(m.gold_id)}: {esc(m.gold_text[:160])}{_jpeg_tag(m.gold_image, 'gold')}</div>"
                f"<div class='cell'>{esc(m.top_id)}: {esc(m.top_text[:160])}{_jpeg_tag(m.top_image, 'ranked first')}</div>"
            )
        parts.append("</div>")
    return "".join(parts)


def track1_section(inputs: Inputs) -> str:
    if not inputs.track1:
        return ""
    rows = [_t1_row(res, row) for res in inputs.track1 for row in res.rows]
    parts = [
        '<h2 id="track1">Track 1 retrieval</h2>',
        table(T1_HEADERS, rows, "track1-table"),
        '<p class="note">Scores are fractions: a task\'s score is the mean of its recalls at the '
        "rules' k (final: R@1, R@3, R@5), the overall score the mean of the tasks'. MMDocIR counts "
        "fractional recall, M2KR the hit rate. Latency: one query, encode + search.</p>",
    ]
    png = plots.recall_curves(inputs.track1)
    if png:
        parts.append("<h3>Recall@k per retriever</h3>" + img_tag(png, "recall at k per retriever"))
    for res in inputs.track1:
        best = max(res.rows, key=lambda r: r.summary.get("overall") or 0)
        png = plots.recall_by_kind(best, f"{res.name}: {best.name}, recall@k per query kind")
        if png:
            parts.append(
                f"<h3>Recall@k per query kind: {esc(res.name)} ({esc(best.name)})</h3>"
                + img_tag(png, "recall by kind")
            )
        parts.append(_gallery(res))
    return "".join(parts)


# ----------------------------------------------------------------------------------------------
# machine


def _versions() -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    out = [("python", platform.python_version())]
    for pkg in (
        "mmctr",
        "torch",
        "numpy",
        "pyarrow",
        "matplotlib",
        "faiss-cpu",
        "sentence-transformers",
        "pillow",
    ):
        try:
            out.append((pkg, version(pkg)))
        except PackageNotFoundError:
            pass
    return out


def machine_section(inputs: Inputs) -> str:
    parts = ['<h2 id="machine">Machines</h2>']
    for b in inputs.benches:
        m = b.machine
        if not m:
            continue
        parts.append(
            f"<h3>Track 2 bench {esc(b.name)}</h3><p>{esc(m.get('cpu', '?'))}, {esc(m.get('cores', '?'))} cores "
            f"({esc(' '.join(m.get('isa') or []))}), torch {esc(m.get('torch', '?'))}, Python {esc(m.get('python', '?'))}</p>"
        )
        rates = [
            [
                Cell(r.get("dtype")),
                numcell(r.get("threads")),
                numcell(r.get("n")),
                numcell(r.get("gflops"), ",.0f"),
                numcell(r.get("gflops_best"), ",.0f"),
            ]
            for r in m.get("matmul") or []
        ]
        if rates:
            parts.append(
                table(
                    ("dtype", "threads", "matrix side n", "matmul GFLOP/s (median)", "GFLOP/s (best)"),
                    rates,
                    sortable=False,
                )
            )
    for res in inputs.track1:
        m = res.machine
        if m:
            desc = ", ".join(f"{k} {v}" for k, v in m.items() if not isinstance(v, (list, dict)))
            parts.append(f"<h3>Track 1 bench {esc(res.name)}</h3><p>{esc(desc)}</p>")
    try:
        from mmctr.host import cpu_model

        cpu = cpu_model()
    except Exception:  # the report's own machine is context, never a reason to fail
        cpu = platform.processor() or platform.machine()
    parts.append(
        f"<h3>This report was written on</h3><p>{esc(cpu)}, {os.cpu_count()} cores, {esc(platform.platform())}</p>"
        + table(("library", "version"), [[Cell(n), Cell(v)] for n, v in _versions()], sortable=False)
    )
    return "".join(parts)


# ----------------------------------------------------------------------------------------------
# page


def render(inputs: Inputs, title: str, sources: list[tuple[str, Path]]) -> str:
    sections = [
        ("summary", summary_section(inputs)),
        ("curves", curves_section(inputs)),
        ("frontier", frontier_section(inputs)),
        ("embeddings", embedding_section(inputs)),
        ("track1", track1_section(inputs)),
        ("machine", machine_section(inputs)),
    ]
    names = {
        "summary": "Track 2 runs",
        "curves": "learning curves",
        "frontier": "efficiency",
        "embeddings": "embeddings",
        "track1": "Track 1",
        "machine": "machines",
    }
    nav = " ".join(f'<a href="#{k}">{names[k]}</a>' for k, body in sections if body)
    listed = "".join(f"<li><code>{esc(p)}</code> — {esc(kind)}</li>" for kind, p in sources)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{GENERATOR}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>"
        f'<h1>{esc(title)}</h1><p class="note">Written by <code>mmctr report</code> on {when}. '
        f"Everything is inside this file.</p><nav>{nav}</nav>"
        f'<div id="js-errors"></div>'
        + "".join(body for _, body in sections)
        + f'<h2>Inputs</h2><ul class="note">{listed}</ul>'
        + f"</main><script>{JS}</script></body></html>\n"
    )
