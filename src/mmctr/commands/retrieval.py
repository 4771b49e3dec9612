"""`mmctr retrieval`: Track 1 (MMDocIR page retrieval + M2KR passage retrieval).

synth       write a data root in the challenge's layout, with the answers in truth/
retrievers  list the retrievers
predict     rank both tasks with one retriever and write the submission CSV
score       a submission CSV against the truth: recalls, nDCG@5, task and overall scores
demo        synth -> predict -> score in one directory
index       build a persistent index (data root, PDFs, images); add / delete in place
search      search an index by text and/or image
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mmctr.errors import ConfigError, MMCTRError

# The generator's scales (mmctr.retrieval.data.synth.SCALES); listed here so that `mmctr --help`
# does not import the generator. A test checks the two agree.
SCALES = ("tiny", "small", "full")
RULE_NAMES = ("final", "draft")
DEMO_SUMMARY = "retrieval_demo_summary.json"


class _Fmt(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help, unless the help already says it or the option is
    unset by default (None, False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        d = action.default
        if (
            not action.option_strings
            or "default" in h
            or d is None
            or d is False
            or d == []
            or d is argparse.SUPPRESS
        ):
            return h
        return h + " (default: %(default)s)"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "retrieval",
        help="Track 1: multimodal document retrieval (synth, retrievers, predict, score, demo, index, search)",
        description="Track 1 of the challenge: MMDocIR page retrieval and M2KR passage retrieval. "
        "The usual path is synth -> predict -> score; demo runs all three.",
    )
    rsub = p.add_subparsers(dest="retrieval_command", required=True, metavar="SUBCOMMAND")
    from mmctr.commands.retrieval_distill import add_distill
    from mmctr.commands.retrieval_train import add_train

    _add_synth(rsub)
    _add_retrievers(rsub)
    add_train(rsub, _Fmt)
    add_distill(rsub, _Fmt)
    for add in (_add_predict, _add_score, _add_demo):
        add(rsub)
    from mmctr.commands.retrieval_index import add_index, add_search

    add_index(rsub, _Fmt)
    add_search(rsub, _Fmt)
    return p


def run(args: argparse.Namespace) -> int:
    return int(args._retrieval_run(args) or 0)


# ----------------------------------------------------------------------------------------------
# synth


def _add_synth(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser(
        "synth",
        help="generate Track 1 data in the challenge's layout, with known answers",
        description="Write MMDocIR/ and M2KR/ in the challenge's layout under --out, with the "
        "gold answers and question kinds in --out/truth/ (the real files carry none).",
        formatter_class=_Fmt,
    )
    p.add_argument(
        "--scale",
        default="small",
        choices=SCALES,
        help="tiny: tests (seconds); small: the demo; full: the real challenge's counts",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same bytes")
    p.add_argument("--out", type=Path, required=True, help="data root to write (must not exist, or be empty)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier `retrieval synth` output"
    )
    p.add_argument("--no-progress", action="store_true", help="do not print the generator's steps")
    p.set_defaults(_retrieval_run=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from mmctr.retrieval.data.synth import generate

    summary = generate(
        args.out, scale=args.scale, seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress
    )
    for line in _synth_lines(summary, args.out):
        print(line)
    return 0


def _kinds(counts: dict[str, int]) -> str:
    from mmctr.retrieval.metrics import KIND_ORDER

    order = sorted(counts, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))
    return ", ".join(f"{counts[k]} {k}" for k in order)


def _synth_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """A few lines from the generator's summary: what each task holds, and where the answers are."""
    c = summary.get("counts", {})
    lines = [
        f"wrote {out} ({summary.get('scale')} scale, seed {summary.get('seed')}, {summary.get('seconds', 0):.1f} s)"
    ]
    d, m = c.get("test_mmdocir"), c.get("test_m2kr")
    if d:
        lines.append(
            f"  MMDocIR  {d['questions']:,} questions ({_kinds(d.get('question_kinds', {}))}; "
            f"{d.get('two_gold_questions', 0)} with two gold pages) over {d['pages']:,} pages "
            f"of {d.get('documents', 0):,} documents"
        )
    if m:
        lines.append(
            f"  M2KR     {m['queries']:,} queries ({_kinds(m.get('query_kinds', {}))}) over "
            f"{m['passages']:,} passages"
        )
    td, tm = c.get("train_mmdocir"), c.get("train_m2kr")
    if td or tm:
        lines.append(
            f"  train/   {(td or {}).get('questions', 0):,} MMDocIR questions, "
            f"{(tm or {}).get('queries', 0):,} M2KR queries, gold filled"
        )
    lines.append(f"  answers in {out / 'truth'} (mmctr retrieval score --pred CSV --truth {out / 'truth'})")
    return lines


# ----------------------------------------------------------------------------------------------
# retrievers


def _add_retrievers(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser(
        "retrievers",
        help="list the retrievers",
        description="The retrievers `predict --retriever` accepts, with what each does.",
        formatter_class=_Fmt,
    )
    p.set_defaults(_retrieval_run=_run_retrievers)


def _run_retrievers(args: argparse.Namespace) -> int:
    from mmctr.retrieval.retrievers import RETRIEVERS

    width = max(len(n) for n in RETRIEVERS)
    for name, entry in RETRIEVERS.items():
        print(f"{name:{width}s}  {entry.about}")
    return 0


# ----------------------------------------------------------------------------------------------
# predict


def _add_predict(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser(
        "predict",
        help="rank both tasks with one retriever and write the submission CSV",
        description="Rank every MMDocIR question's pages and every M2KR query's passages found "
        "under --data, and write one submission CSV (header question_id,passage_id; a JSON list "
        "of ids per row) for both tasks.",
        formatter_class=_Fmt,
    )
    p.add_argument("--data", type=Path, required=True, help="data root (generator output or real files)")
    p.add_argument(
        "--retriever",
        default=None,
        help="retriever name (see `mmctr retrieval retrievers`); default: trained when --run is given",
    )
    p.add_argument(
        "--run",
        type=Path,
        default=None,
        help="a run of `mmctr retrieval train`: ranks with the trained retriever (or fuses it, with --retriever hybrid_trained)",
    )
    p.add_argument("--out", type=Path, required=True, help="submission CSV to write")
    p.add_argument(
        "--rules",
        default="final",
        choices=RULE_NAMES,
        help="final: 5 ids per question (the competition); draft: 10",
    )
    p.add_argument(
        "-k",
        type=int,
        default=None,
        help="ids asked of the retriever per question, at most the rules' list length; shorter "
        "lists are padded by repeating the top id, as teams did (default: the list length)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier submission CSV"
    )
    p.add_argument(
        "--doc-text",
        default=None,
        choices=("vlm", "ocr", "both"),
        help="MMDocIR page text for text retrievers (default: the retriever's own)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="embedding cache (default: $MMCTR_CACHE or ~/.cache/mmctr)",
    )
    p.add_argument("--no-cache", action="store_true", help="encode everything afresh; write no cache")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other retriever option (repeatable; VALUE read as JSON when it parses, else as text)",
    )
    p.add_argument("--progress", action="store_true", help="show the retriever's progress bars")
    p.set_defaults(_retrieval_run=_run_predict)


def retriever_options(args: argparse.Namespace):
    """RetrieverOptions from predict's/demo's flags; an unknown --option key is an error."""
    from mmctr.retrieval.retrievers.base import RetrieverOptions

    d: dict[str, Any] = {}
    for item in getattr(args, "option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        try:
            d[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            d[key.strip()] = value
    if getattr(args, "doc_text", None):
        d["doc_text"] = args.doc_text
    if getattr(args, "cache_dir", None) is not None:
        d["cache_dir"] = args.cache_dir
    if getattr(args, "no_cache", False):
        d["use_cache"] = False
    if getattr(args, "run", None) is not None:
        d["run"] = args.run
    d.setdefault("progress", bool(getattr(args, "progress", False)))
    return RetrieverOptions.from_dict(d)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ms" if values else "-"


def _brief(timings: dict[str, Any]) -> dict[str, Any]:
    """A retriever's timings with each list of numbers (per-query times) replaced by its median."""
    out = {}
    for key, v in timings.items():
        if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
            out[f"{key}_median"] = statistics.median(v) if v else None
        else:
            out[key] = v
    return out


def predict(
    data_root: Path,
    retriever: str,
    out: Path,
    rules: str = "final",
    k: int | None = None,
    overwrite: bool = False,
    options=None,
    log=print,
) -> dict[str, Any]:
    """Rank both tasks of `data_root` with `retriever` and write the submission CSV to `out`.
    Returns what happened: questions per task, seconds, the retriever's timings."""
    from mmctr.outputs import check_out
    from mmctr.retrieval.data import load
    from mmctr.retrieval.metrics import get_rules
    from mmctr.retrieval.retrievers import RETRIEVERS, build_retriever
    from mmctr.retrieval.submission import SUBMISSION_CSV, write_submission

    rs = get_rules(rules)
    k = rs.submit_k if k is None else int(k)
    if not 1 <= k <= rs.submit_k:
        raise ConfigError(f"-k {k}: must be 1..{rs.submit_k} (the {rs.name} rules list {rs.submit_k} ids)")
    if retriever not in RETRIEVERS:
        raise ConfigError(f"unknown retriever {retriever!r}; expected one of {', '.join(RETRIEVERS)}")
    check_out(out, SUBMISSION_CSV, overwrite)  # refuse before minutes of work, not after

    data = load(Path(data_root))
    tasks = [
        (
            "MMDocIR",
            data.docs,
            "rank_docs",
            [q.question_id for q in data.docs.questions] if data.docs else [],
        ),
        (
            "M2KR",
            data.passages,
            "rank_passages",
            [q.question_id for q in data.passages.queries] if data.passages else [],
        ),
    ]
    if data.docs is None and data.passages is None:
        raise MMCTRError(f"{data_root}: holds neither MMDocIR nor M2KR data; nothing to rank")
    r = build_retriever(retriever, options)
    ranked: dict[str, list[str]] = {}
    report: dict[str, Any] = {"retriever": retriever, "rules": rs.name, "k": k, "tasks": {}}
    for label, part, method, qids in tasks:
        if part is None:
            continue
        t0 = time.perf_counter()
        got = getattr(r, method)(part, k)
        secs = time.perf_counter() - t0
        missing = [q for q in qids if not got.get(q)]
        if missing:
            raise MMCTRError(
                f"retriever {retriever!r} returned no ranking for {len(missing)} {label} questions "
                f"(first: {missing[:5]}); nothing written"
            )
        clash = set(got) & set(ranked)
        if clash:
            raise MMCTRError(
                f"{data_root}: {len(clash)} question ids are in both tasks (first: {sorted(clash)[:5]}); "
                "one submission CSV cannot hold both"
            )
        ranked.update({q: got[q] for q in qids})
        t = dict(r.timings)
        report["tasks"][label] = {"questions": len(qids), "seconds": secs, "timings": _brief(t)}
        fallback = f"; {t['fallback']}" if t.get("fallback") else ""
        log(
            f"{label:8s} {len(qids):,} questions ranked in {secs:.1f} s "
            f"(index {t.get('index_seconds', 0.0):.1f} s over {t.get('items_indexed', 0):,} items; "
            f"per query: encode {_ms(t.get('encode_ms', []))}, search {_ms(t.get('search_ms', []))}){fallback}"
        )
    write_submission(ranked, out, rs, overwrite=overwrite)
    report["rows"] = len(ranked)
    log(f"wrote {out}: {len(ranked):,} rows, {rs.submit_k} ids each ({rs.name} rules, retriever {retriever})")
    return report


def retriever_name(args: argparse.Namespace) -> str:
    """--retriever, or `trained` when only --run is given."""
    if args.retriever:
        return args.retriever
    if getattr(args, "run", None) is not None:
        return "trained"
    raise ConfigError("--retriever NAME is needed (or --run RUN for the trained retriever)")


def _run_predict(args: argparse.Namespace) -> int:
    predict(
        args.data,
        retriever_name(args),
        args.out,
        rules=args.rules,
        k=args.k,
        overwrite=args.overwrite,
        options=retriever_options(args),
    )
    return 0


# ----------------------------------------------------------------------------------------------
# score


def _add_score(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser(
        "score",
        help="score a submission CSV against the truth",
        description="Check a submission CSV against the rules and the truth, then print per task "
        "R@1/3/5/10 (fractional for MMDocIR, hit rate for M2KR), nDCG@5, the task score (mean of "
        "the rules' recalls) and the overall score (mean of the task scores), per question kind "
        "when the truth has kinds. Tables show percentages; --json prints fractions.",
        formatter_class=_Fmt,
    )
    p.add_argument("--pred", type=Path, default=None, help="submission CSV (or --run with --data)")
    p.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="the generator's truth directory (DATA/truth), or a data root whose files carry gold "
        "(DATA/train); default with --run: DATA/truth",
    )
    p.add_argument(
        "--run",
        type=Path,
        default=None,
        help="instead of --pred: rank --data with this trained run (`mmctr retrieval train`) and score that",
    )
    p.add_argument(
        "--retriever",
        default=None,
        help="with --run: the retriever that uses it (default trained; hybrid_trained fuses it)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="with --run: embedding cache (default: $MMCTR_CACHE or ~/.cache/mmctr)",
    )
    p.add_argument(
        "--rules",
        default="final",
        choices=RULE_NAMES,
        help="final: mean(R@1,R@3,R@5), 5 ids; draft: mean(R@1,R@5,R@10), 10 ids",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data root the submission was made from: ids that are not candidates of their question are counted",
    )
    p.add_argument(
        "--json", action="store_true", help="print the result as JSON (keys mmdocir, m2kr, overall)"
    )
    p.set_defaults(_retrieval_run=_run_score)


def known_ids(data_root: Path) -> dict[str, Any]:
    """question id -> its candidate ids (the pages of its document; the whole passage pool)."""
    from mmctr.retrieval.data import load

    data = load(Path(data_root))
    out: dict[str, Any] = {}
    if data.docs is not None:
        pages = data.docs.pages
        by_doc: dict[str, set[str]] = {}
        for d, pid in zip(pages.doc_name, pages.page_id, strict=True):
            by_doc.setdefault(d, set()).add(pid)
        for q in data.docs.questions:
            out[q.question_id] = by_doc.get(q.doc_name, set())
    if data.passages is not None:
        pool = set(data.passages.passages.passage_id)
        for q in data.passages.queries:
            out[q.question_id] = pool
    return out


def read_truth(path: Path):
    """The answer key: the generator's truth/ (`path` is a truth directory or a data root holding
    one), else the gold the data files under `path` carry themselves (the generator's train/, or
    real files that ship their gold, such as ViDoRe)."""
    from mmctr.retrieval.data import Truth, load, load_truth
    from mmctr.retrieval.data.truth import GOLD_FILE

    path = Path(path)
    if not path.is_dir() or (path / GOLD_FILE).exists() or (path / "truth" / GOLD_FILE).exists():
        return load_truth(path)
    data = load(path)
    docs_gold = (data.docs.gold or {}) if data.docs is not None else {}
    pass_gold = (data.passages.gold or {}) if data.passages is not None else {}
    if not docs_gold and not pass_gold:
        return load_truth(path)  # its error says where the answers would be
    kind = {q.question_id: q.kind for q in data.passages.queries if q.kind} if pass_gold else {}
    return Truth(mmdocir=dict(docs_gold), m2kr=dict(pass_gold), kind=kind, source=str(path))


def score(
    pred: Path, truth_path: Path, rules: str = "final", data_root: Path | None = None
) -> dict[str, Any]:
    """The submission checked and scored: `{"mmdocir", "m2kr", "overall"}` (see metrics.evaluate);
    `overall` also holds the submission's counts."""
    from mmctr.retrieval.metrics import evaluate
    from mmctr.retrieval.submission import check_against_truth, read_submission

    truth = read_truth(Path(truth_path))
    sub = read_submission(pred, rules)
    counts = check_against_truth(sub, truth, pred, known_ids(data_root) if data_root else None)
    result = evaluate(sub, sub, truth, rules)
    result["overall"].update(counts)
    return result


_TASK_LABEL = {"mmdocir": "MMDocIR", "m2kr": "M2KR"}


def format_scores(result: dict[str, Any]) -> str:
    """The score as a small table, in percent."""
    from mmctr.retrieval.metrics import NDCG_K, REPORT_KS

    ov = result["overall"]
    cols = [f"R@{k}" for k in REPORT_KS] + [f"nDCG@{NDCG_K}", "score"]
    recall_ks = ", ".join(f"R@{k}" for k in ov["ks"])
    head = f"{'task':8s} {'kind':16s} {'questions':>9s}" + "".join(f"{c:>8s}" for c in cols)
    from mmctr.retrieval.metrics import get_rules

    listed = get_rules(ov["rules"]).submit_k
    cut = f" ({listed} ids listed, so R@{max(REPORT_KS)} = R@{listed})" if listed < max(REPORT_KS) else ""
    lines = [f"{ov['rules']} rules: task score = mean({recall_ks}); values in %{cut}", head]

    def row(task: str, kind: str, m: dict[str, Any]) -> str:
        return f"{task:8s} {kind:16s} {m['questions']:>9,d}" + "".join(f"{100 * m[c]:>8.2f}" for c in cols)

    for task in ("mmdocir", "m2kr"):
        m = result[task]
        if m is None:
            continue
        recall = "fractional recall" if m.get("recall") == "fractional" else "hit rate"
        lines.append(row(_TASK_LABEL[task], f"all ({recall.split()[0]})", m))
        for kind, km in m.get("by_kind", {}).items():
            lines.append(row("", kind, km))
    parts = " and ".join(f"{100 * result[t]['score']:.2f}" for t in ov["tasks"])
    overall = f"overall  {100 * ov['score']:.2f}" + (f"  (mean of {parts})" if len(ov["tasks"]) > 1 else "")
    if ov.get("note"):
        overall += f"  ({ov['note']})"
    lines.append(overall)
    if ov.get("unknown_ids"):
        lines.append(
            f"note: {ov['unknown_ids']:,} listed ids in {ov['rows_with_unknown_ids']:,} rows are not "
            "candidates of their question (they count as misses)"
        )
    return "\n".join(lines)


def _run_score(args: argparse.Namespace) -> int:
    if args.run is None:
        if args.pred is None or args.truth is None:
            raise ConfigError("score needs --pred CSV and --truth DIR (or --run RUN with --data DATA)")
        result = score(args.pred, args.truth, args.rules, args.data)
    else:
        if args.pred is not None:
            raise ConfigError("give --pred or --run, not both: --run ranks --data itself")
        if args.data is None:
            raise ConfigError("--run needs --data DATA: the data root to rank and score")
        import tempfile

        truth = args.truth if args.truth is not None else Path(args.data) / "truth"
        with tempfile.TemporaryDirectory(prefix="mmctr-score-") as tmp:
            csv = Path(tmp) / "submission.csv"
            predict(
                args.data,
                retriever_name(args),
                csv,
                rules=args.rules,
                options=retriever_options(args),
                log=lambda m: print(m, file=sys.stderr),
            )
            result = score(csv, truth, args.rules, args.data)
    print(json.dumps(result, indent=2) if args.json else format_scores(result))
    return 0


# ----------------------------------------------------------------------------------------------
# demo


def _add_demo(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser(
        "demo",
        help="synth -> predict -> score in one directory",
        description="Generate Track 1 data (reused when --out already holds it), rank it with one "
        f"retriever, write the submission CSV and score it; the numbers go to --out/{DEMO_SUMMARY}.",
        formatter_class=_Fmt,
    )
    p.add_argument("--out", type=Path, default=Path("retrieval_demo"), help="working directory")
    p.add_argument("--scale", default="small", choices=SCALES, help="generator scale")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--retriever", default="hybrid", help="retriever name (see `mmctr retrieval retrievers`)")
    p.add_argument("--rules", default="final", choices=RULE_NAMES, help="rule set to submit and score under")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="embedding cache (default: $MMCTR_CACHE or ~/.cache/mmctr)",
    )
    p.add_argument("--no-cache", action="store_true", help="encode everything afresh; write no cache")
    p.add_argument("--progress", action="store_true", help="show the generator's and retriever's progress")
    p.set_defaults(_retrieval_run=_run_demo)


def _is_demo_summary(path: Path) -> bool:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and {"scores", "predict", "wall_seconds"} <= set(d)


def _run_demo(args: argparse.Namespace) -> int:
    from mmctr.outputs import OutputKind, move_into_place, temp_beside
    from mmctr.retrieval.data.synth import RETRIEVAL_DATA, generate

    t_all = time.perf_counter()
    out: Path = args.out
    data_root = out / f"data_{args.scale}_seed{args.seed}"
    csv_path = out / f"submission_{args.retriever}_{args.rules}.csv"

    print(f"[1/3] synth: Track 1 data, scale {args.scale}, seed {args.seed} -> {data_root}")
    if RETRIEVAL_DATA.recognise(data_root):
        print("      (already there; reusing it)")
    else:
        summary = generate(data_root, scale=args.scale, seed=args.seed, progress=args.progress)
        for line in _synth_lines(summary, data_root)[1:]:
            print("     " + line)

    print(f"[2/3] predict: retriever {args.retriever} -> {csv_path}")
    report = predict(
        data_root,
        args.retriever,
        csv_path,
        rules=args.rules,
        overwrite=True,  # the demo's own earlier CSV; anything else is refused by SUBMISSION_CSV
        options=retriever_options(args),
        log=lambda s: print("      " + s),
    )

    print(f"[3/3] score: {csv_path} against {data_root / 'truth'}")
    result = score(csv_path, data_root / "truth", args.rules, data_root)
    print(format_scores(result))
    wall = time.perf_counter() - t_all
    summary_path = out / DEMO_SUMMARY
    kind = OutputKind("retrieval demo summary", _is_demo_summary, is_dir=False)
    tmp = temp_beside(summary_path)
    tmp.write_text(
        json.dumps({"scores": result, "predict": report, "wall_seconds": wall}, indent=2, default=str)
    )
    move_into_place(tmp, summary_path, kind, overwrite=True)
    from mmctr.report import write_report

    page = write_report(
        [out], out / "report.html", title=f"mmctr retrieval demo: {args.retriever}", overwrite=True
    )
    print(f"demo took {wall:.0f} s; summary in {summary_path}")
    print(f"report: {page} (open it in a browser)")
    return 0
