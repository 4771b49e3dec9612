"""Training the two-tower retriever, scoring with it, and its run directory.

Loss: InfoNCE with several positives, -log(sum over gold of e^(t s) / sum over candidates of
e^(t s)), t a learnt scale. The candidates of a question are
- MMDocIR: every page of its document. Those are the pages it is ranked among at test time, and
  the hardest negatives there are; pages of other documents never compete, so in-batch negatives
  would teach nothing the test asks.
- M2KR: its gold, the `hard_negatives` best wrong passages of each untrained retriever that sees
  the query's inputs (image MaxSim over windows for a photo, BM25 for the text), and the gold
  passages of the other M2KR questions in the batch (in-batch negatives).
A share of the train questions (`valid_share`) is held out; the epoch with the best held-out task
score (mean of R@1/3/5 over both tasks) is kept, and training stops `patience` epochs after it.

A run directory: `retrieval_run.json` (what was trained on, the encoders and retriever options the
features need), `config.json` (model), `model.safetensors`, `metrics.json` (per-epoch losses and
held-out scores, `train_seconds`, `feature_seconds`).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmctr.errors import ConfigError, DataError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside
from mmctr.retrieval.metrics import question_score
from mmctr.retrieval.retrievers.base import RetrieverOptions, TextEmbedder, top_k
from mmctr.retrieval.trained.features import (
    FIELDS,
    SPARSE_SCALE,
    DocFeatures,
    PassageFeatures,
    doc_features,
    passage_features,
)
from mmctr.retrieval.trained.model import TwoTower, TwoTowerConfig
from mmctr.training.distributed import World, barrier, block, gather_objects, sum_gradients, sum_over_ranks

RUN_FILE = "retrieval_run.json"
RUN_KIND = OutputKind(
    "trained retrieval run",
    lambda p: p.is_dir() and (p / RUN_FILE).exists() and (p / "model.safetensors").exists(),
)
# Retriever options that shape the frozen features: a run records them and the retriever uses them.
FEATURE_OPTIONS = ("text_encoder", "image_encoder", "image_size", "crop_grids", "query_instruction")


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-2
    weight_decay: float = 1e-4
    hard_negatives: int = 30  # M2KR: per untrained retriever
    train_windows: int = 4  # M2KR: windows per passage in a training step (closest to the photo)
    # learning rate of the text and image projections relative to `lr` (the field weights' and the
    # scale's); 0 freezes them and trains the field weights alone
    projection_lr_scale: float = 0.1
    valid_share: float = 0.2
    patience: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.hard_negatives < 1:
            raise ConfigError("train: epochs, batch_size and hard_negatives must be at least 1")
        if not 0 <= self.valid_share < 1:
            raise ConfigError(f"train: valid_share={self.valid_share}; expected 0 <= share < 1")


# ------------------------------------------------------------------------------------------------
# scoring with a model over frozen features


def _flags(is_m2kr: bool, has_q: bool, has_photo: bool) -> torch.Tensor:
    return torch.tensor([float(is_m2kr), float(has_q), float(has_photo)])


class DocScorer:
    """A model's MMDocIR scores of one question's document pages; page vectors projected once."""

    def __init__(self, model: TwoTower, f: DocFeatures):
        self.model, self.f = model, f
        with torch.no_grad():
            self.vlm = model.doc_text(torch.from_numpy(f.pages_vlm))  # (P, Dt)
            self.ocr = model.doc_text(torch.from_numpy(f.pages_ocr))
            q = torch.from_numpy(f.q_text)
            self.q = model.query_text(q)  # (Q, Dt)
            flags = torch.stack([_flags(False, True, False)] * len(q)) if len(q) else torch.zeros(0, 3)
            self.w = model.field_weights(q, flags)  # (Q, F)

    def scores(self, qi: int) -> np.ndarray:
        c = torch.from_numpy(self.f.cands[qi])
        with torch.no_grad():
            s = self.model.doc_scores(
                self.q[qi],
                self.w[qi],
                self.vlm[c],
                self.ocr[c],
                torch.from_numpy(self.f.sparse_vlm[qi]),
                torch.from_numpy(self.f.sparse_ocr[qi]),
            )
        return s.numpy()


class PassageScorer:
    """A model's M2KR scores of the whole passage pool; passage and window vectors projected once."""

    def __init__(self, model: TwoTower, f: PassageFeatures):
        self.model, self.f = model, f
        with torch.no_grad():
            self.texts = model.doc_text(torch.from_numpy(f.p_text))  # (P, Dt)
            self.windows = model.image(torch.from_numpy(f.windows)) if len(f.owner) else None  # (W, Di)
            self.segment = torch.from_numpy(f.owner)
            q = torch.from_numpy(f.q_text)
            self.q = model.query_text(q)
            self.photo = model.image(torch.from_numpy(f.q_photo))
            flags = (
                torch.stack(
                    [_flags(True, hq, hp) for hq, hp in zip(f.has_question, f.has_photo, strict=True)]
                )
                if len(q)
                else torch.zeros(0, 3)
            )
            self.w = model.field_weights(q, flags)

    def nbytes(self) -> int:
        n = self.texts.numel() * 4 + (self.windows.numel() * 4 if self.windows is not None else 0)
        return int(n + self.segment.numel() * 8)

    def scores(self, qi: int) -> np.ndarray:
        f = self.f
        sparse = torch.from_numpy(f.bm25.scores(f.q_tokens[qi]) * np.float32(SPARSE_SCALE))
        with torch.no_grad():
            s = self.model.passage_scores(
                self.q[qi],
                self.photo[qi] if f.has_photo[qi] else None,
                self.w[qi],
                self.texts,
                sparse,
                self.windows,
                self.segment,
            )
        return s.numpy()


def _per_question(ranked: list[np.ndarray], gold: list[np.ndarray], fractional: bool) -> list[float]:
    """Each question's mean of R@1/3/5 (the final rules): fractional recall for MMDocIR, hit rate
    for M2KR; questions without a gold are left out."""
    recall = "fractional" if fractional else "hit"
    return [
        question_score(r.tolist(), set(np.asarray(g).tolist()), recall)
        for r, g in zip(ranked, gold, strict=True)
        if len(g)
    ]


def held_out_score(
    model: TwoTower, df: DocFeatures | None, pf: PassageFeatures | None, dq, pq, world: World | None = None
) -> dict[str, float]:
    """The task scores of the held-out questions `dq` (MMDocIR) and `pq` (M2KR). Under torchrun each
    rank ranks its own block of them and the per-question values are gathered, so every rank
    returns the same numbers (and takes the same early-stopping decision)."""
    world = world or World()
    out: dict[str, float] = {}
    model.eval()
    if df is not None and len(dq):
        sc = DocScorer(model, df)
        mine = np.asarray(dq)[block(len(dq), world)]
        ranked = [df.cands[i][top_k(sc.scores(i), 5)] for i in mine]
        vals = _per_question(ranked, [df.cands[i][df.gold[i]] for i in mine], fractional=True)
        out["mmdocir"] = _mean_over_ranks(vals, world)
    if pf is not None and len(pq):
        sc = PassageScorer(model, pf)
        mine = np.asarray(pq)[block(len(pq), world)]
        ranked = [top_k(sc.scores(i), 5) for i in mine]
        out["m2kr"] = _mean_over_ranks(_per_question(ranked, [pf.gold[i] for i in mine], False), world)
    out["overall"] = float(np.mean(list(out.values()))) if out else 0.0
    return out


def _mean_over_ranks(values: list[float], world: World) -> float:
    every = [v for part in gather_objects(values, world) for v in part]  # in question order
    return float(np.mean(every)) if every else 0.0


# ------------------------------------------------------------------------------------------------
# training


def _mine_passage_negatives(pf: PassageFeatures, bm25: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Per M2KR question: the n best wrong passages of untrained image MaxSim and of BM25."""
    out = []
    starts = np.flatnonzero(np.r_[True, pf.owner[1:] != pf.owner[:-1]]) if len(pf.owner) else None
    for i in range(len(pf.question_ids)):
        gold = set(pf.gold[i].tolist())
        picks: list[int] = []
        if pf.has_photo[i] and starts is not None:
            img = np.full(len(pf.p_text), -np.inf, dtype=np.float32)
            img[pf.owner[starts]] = np.maximum.reduceat(pf.windows @ pf.q_photo[i], starts)
            picks += [int(r) for r in top_k(img, n + len(gold)) if r not in gold][:n]
        if pf.q_tokens[i]:
            bm = bm25[i]
            picks += [int(r) for r in top_k(bm, n + len(gold)) if r not in gold][:n]
        out.append(np.array(sorted(set(picks)), dtype=np.int64))
    return out


def _nce(scores: torch.Tensor, positive: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scores * scale
    return torch.logsumexp(logits, 0) - torch.logsumexp(logits[positive], 0)


def _top_windows(pf: PassageFeatures, rows: np.ndarray, qi: int, n: int) -> np.ndarray:
    """The n windows of a passage closest to question qi's photo before training: the MaxSim of a
    residual projection lands on one of them, and the step costs n, not all, windows a passage."""
    if len(rows) <= n:
        return rows
    sims = pf.windows[rows] @ pf.q_photo[qi]  # (w,)
    return rows[np.argpartition(-sims, n - 1)[:n]]


def _window_rows(pf: PassageFeatures) -> list[np.ndarray]:
    rows: list[list[int]] = [[] for _ in range(len(pf.p_text))]
    for w, p in enumerate(pf.owner.tolist()):
        rows[p].append(w)
    return [np.asarray(r, dtype=np.int64) for r in rows]


def train_model(
    df: DocFeatures | None,
    pf: PassageFeatures | None,
    config: TrainConfig,
    model_config: TwoTowerConfig | None = None,
    progress: bool = True,
    world: World | None = None,
) -> tuple[TwoTower, dict[str, Any]]:
    """Train the two-tower model. Under torchrun (`world` of several ranks) every rank draws the
    same batches (same seed), computes the loss of its own share of each batch (every
    `world.size`-th question), and the gradients are summed over the ranks before each step: the
    update is the 1-process update up to float summation order."""
    from tqdm import tqdm

    world = world or World()

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dims = {}
    if df is not None:
        dims["text_dim"] = df.q_text.shape[1]
    if pf is not None:
        dims["text_dim"] = pf.q_text.shape[1]
        dims["image_dim"] = pf.windows.shape[1]
    mc = model_config or TwoTowerConfig(**dims)
    model = TwoTower(mc)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(n)
        n_valid = int(round(n * config.valid_share))
        return np.sort(order[n_valid:]), np.sort(order[:n_valid])

    d_train, d_valid = split(len(df.question_ids)) if df is not None else (np.zeros(0, int), np.zeros(0, int))
    p_train, p_valid = split(len(pf.question_ids)) if pf is not None else (np.zeros(0, int), np.zeros(0, int))
    if df is not None:  # questions whose gold is not among their pages teach nothing
        d_train = np.array([i for i in d_train if df.gold[i].any()], dtype=np.int64)
    # BM25 of every M2KR question over the pool: frozen, so scored once, not in every step
    bm25 = [pf.bm25.scores(t) for t in pf.q_tokens] if pf is not None else []
    negatives = _mine_passage_negatives(pf, bm25, config.hard_negatives) if pf is not None else []
    win_rows = _window_rows(pf) if pf is not None else []
    examples = [("d", int(i)) for i in d_train] + [("p", int(i)) for i in p_train]
    if not examples:
        raise DataError("train split", None, "no question with a gold page or passage to learn from")

    d_tensors = None
    if df is not None:
        d_tensors = (
            torch.from_numpy(df.q_text),
            torch.from_numpy(df.pages_vlm),
            torch.from_numpy(df.pages_ocr),
        )
    p_tensors = None
    if pf is not None:
        p_tensors = (
            torch.from_numpy(pf.q_text),
            torch.from_numpy(pf.q_photo),
            torch.from_numpy(pf.p_text),
            torch.from_numpy(pf.windows),
        )
    projections = [p for m in (model.query_text, model.doc_text, model.image) for p in m.parameters()]
    rest = [model.gate.weight, model.gate.bias, model.logit_scale]
    groups = [{"params": rest, "lr": config.lr}]
    if config.projection_lr_scale > 0:
        groups.append({"params": projections, "lr": config.lr * config.projection_lr_scale})
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    best, best_state, best_epoch, since = -1.0, None, 0, 0
    start = held_out_score(model, df, pf, d_valid, p_valid, world)
    history.append({"epoch": 0, "loss": None, "held_out": start})
    params = list(model.parameters())
    bar = tqdm(
        range(1, config.epochs + 1),
        desc="train two-tower",
        unit="epoch",
        disable=not progress or not world.main,
    )
    for epoch in bar:
        model.train()
        order = rng.permutation(len(examples))
        losses = []
        for s in range(0, len(order), config.batch_size):
            batch = [examples[j] for j in order[s : s + config.batch_size]]
            batch_gold = [int(g) for kind, i in batch if kind == "p" for g in pf.gold[i]]
            loss = torch.zeros(())
            scale = model.logit_scale.exp().clamp(max=100.0)
            mine = batch[world.rank :: world.size]
            for kind, i in mine:
                if kind == "d":
                    qt, vlm, ocr = d_tensors
                    q = qt[i : i + 1]
                    w = model.field_weights(q, _flags(False, True, False)[None])[0]
                    c = torch.from_numpy(df.cands[i])
                    s_ = model.doc_scores(
                        model.query_text(q)[0],
                        w,
                        model.doc_text(vlm[c]),
                        model.doc_text(ocr[c]),
                        torch.from_numpy(df.sparse_vlm[i]),
                        torch.from_numpy(df.sparse_ocr[i]),
                    )
                    loss = loss + _nce(s_, torch.from_numpy(df.gold[i]), scale)
                else:
                    qt, photo, ptext, windows = p_tensors
                    gold = pf.gold[i]
                    others = np.array([g for g in batch_gold if g not in set(gold.tolist())], dtype=np.int64)
                    cand = np.unique(np.concatenate([gold, negatives[i], others]))
                    positive = torch.from_numpy(np.isin(cand, gold))
                    img_rows, seg = None, None
                    if pf.has_photo[i]:
                        wr = [_top_windows(pf, win_rows[c], i, config.train_windows) for c in cand]
                        seg = torch.from_numpy(
                            np.concatenate([np.full(len(r), j) for j, r in enumerate(wr)]).astype(np.int64)
                        )
                        img_rows = torch.from_numpy(np.concatenate(wr))
                    q = qt[i : i + 1]
                    w = model.field_weights(q, _flags(True, pf.has_question[i], pf.has_photo[i])[None])[0]
                    sparse = torch.from_numpy(bm25[i][cand] * np.float32(SPARSE_SCALE))
                    s_ = model.passage_scores(
                        model.query_text(q)[0],
                        model.image(photo[i]) if pf.has_photo[i] else None,
                        w,
                        model.doc_text(ptext[torch.from_numpy(cand)]),
                        sparse,
                        model.image(windows[img_rows]) if img_rows is not None else None,
                        seg,
                    )
                    loss = loss + _nce(s_, positive, scale)
            loss = loss / len(batch)
            opt.zero_grad()
            if mine:  # a rank left without a question of a short last batch adds no gradient
                loss.backward()
            sum_gradients(params, world)
            opt.step()
            losses.append(loss.item())  # this rank's share of the step's loss
        epoch_loss = sum_over_ranks(float(np.sum(losses)), world) / len(losses)  # one all-reduce an epoch
        held = held_out_score(model, df, pf, d_valid, p_valid, world)
        history.append({"epoch": epoch, "loss": epoch_loss, "held_out": held})
        bar.set_postfix(loss=f"{epoch_loss:.3f}", held_out=f"{held['overall']:.3f}")
        if held["overall"] > best + 1e-6 or best_state is None:
            best, best_epoch, since = held["overall"], epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= config.patience:
                break
    bar.close()
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "best_epoch": best_epoch,
        "held_out_best": best,
        "held_out_untrained": start,
        "history": history,
        "train_questions": {"mmdocir": int(len(d_train)), "m2kr": int(len(p_train))},
        "held_out_questions": {"mmdocir": int(len(d_valid)), "m2kr": int(len(p_valid))},
        "field_weights_mean": _mean_weights(model, df, pf),
    }
    return model, summary


def _mean_weights(model: TwoTower, df: DocFeatures | None, pf: PassageFeatures | None) -> dict[str, float]:
    out: dict[str, float] = {}
    with torch.no_grad():
        if df is not None and len(df.question_ids):
            w = DocScorer(model, df).w.mean(0)
            out.update({f: float(w[j]) for j, f in enumerate(FIELDS) if f.endswith(("vlm", "ocr"))})
        if pf is not None and len(pf.question_ids):
            w = PassageScorer(model, pf).w.mean(0)
            out.update(
                {
                    f: float(w[j])
                    for j, f in enumerate(FIELDS)
                    if f in ("dense_passage", "sparse_passage", "image")
                }
            )
    return out


# ------------------------------------------------------------------------------------------------
# the run directory


def feature_options(options: RetrieverOptions) -> dict[str, Any]:
    d = {name: getattr(options, name) for name in FEATURE_OPTIONS}
    d["crop_grids"] = list(d["crop_grids"])
    return d


def train_run(
    data_roots: list[Path],
    out: Path,
    options: RetrieverOptions,
    config: TrainConfig,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
    world: World | None = None,
) -> dict[str, Any]:
    """Features of the train splits of `data_roots`, the model trained on them, written to `out`.

    Under torchrun every rank builds the same features (rank 0 first, filling the embedding cache
    that the others then read), trains its share of each batch, and rank 0 alone writes `out`."""

    from mmctr.retrieval.data import load_train

    world = world or World()
    check_out(out, RUN_KIND, overwrite)
    t0 = time.perf_counter()
    dfs: list[DocFeatures] = []
    pfs: list[PassageFeatures] = []
    if not world.main:
        barrier(world)  # wait for rank 0 to fill the embedding cache: then read from it
    text = TextEmbedder(options)
    for root in data_roots:
        data = load_train(root)
        if world.main:
            log(f"features of {root}/train (frozen encoders, cached) ...")
        if data.docs is not None:
            dfs.append(doc_features(data.docs, options, text))
        if data.passages is not None:
            pfs.append(passage_features(data.passages, options, text))
    if world.main:
        barrier(world)
    df = merge_doc_features(dfs)
    pf = merge_passage_features(pfs)
    feature_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    model, summary = train_model(df, pf, config, progress=progress, world=world)
    train_seconds = time.perf_counter() - t1
    metrics = {
        **summary,
        "train_seconds": train_seconds,
        "feature_seconds": feature_seconds,
        "world_size": world.size,
    }
    if not world.main:
        return metrics
    run = {
        "kind": "mmctr retrieval two-tower",
        "data": [str(Path(r).resolve()) for r in data_roots],
        "retriever_options": feature_options(options),
        "train_config": asdict(config),
    }
    write_run(out, RUN_KIND, model, run, metrics, overwrite)
    return metrics


def write_run(
    out: Path,
    kind: OutputKind,
    model: torch.nn.Module,
    run: dict[str, Any],
    metrics: dict[str, Any],
    overwrite: bool,
) -> None:
    """A retrieval run directory (`model.safetensors`, `config.json` from `model.config`, RUN_FILE,
    `metrics.json`) written into a temporary directory beside `out`, then renamed into place: `out`
    is either absent, the earlier run, or the whole new one, and a failed write leaves nothing."""
    import shutil

    from safetensors.torch import save_file

    tmp = temp_beside(out)
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        (tmp / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        move_into_place(tmp, out, kind, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)  # ours: nothing half-written stays beside `out`


def load_run(run: Path) -> tuple[TwoTower, dict[str, Any]]:
    """The model of a run directory and its `retrieval_run.json`; named errors for what is missing."""
    from safetensors.torch import load_file

    run = Path(run)
    for name in (RUN_FILE, "config.json", "model.safetensors"):
        if not (run / name).is_file():
            raise DataError(run / name, None, "not found; is this a run written by `mmctr retrieval train`?")
    try:
        info = json.loads((run / RUN_FILE).read_text())
        cfg_dict = json.loads((run / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise DataError(run, None, f"unreadable run file ({err})") from None
    kind = info.get("kind") if isinstance(info, dict) else None
    if kind is not None and kind != "mmctr retrieval two-tower":
        raise DataError(
            run / RUN_FILE,
            "kind",
            f"{kind!r}, not a two-tower run of `mmctr retrieval train`"
            + ("; use it with --retriever distilled" if kind == "mmctr retrieval distilled" else ""),
        )
    known = {f.name for f in fields(TwoTowerConfig)}
    unknown = sorted(set(cfg_dict) - known)
    if unknown:
        raise DataError(run / "config.json", None, f"unknown key(s) {unknown}; known: {sorted(known)}")
    model = TwoTower(TwoTowerConfig(**cfg_dict))
    state = load_file(str(run / "model.safetensors"))
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise DataError(run / "model.safetensors", None, f"missing tensors {sorted(missing)}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(run / "model.safetensors", None, f"does not fit config.json ({err})") from None
    model.eval()
    return model, info


# ------------------------------------------------------------------------------------------------
# several train splits as one


def merge_doc_features(parts: list[DocFeatures]) -> DocFeatures | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    offset, cands = 0, []
    for p in parts:
        cands += [c + offset for c in p.cands]
        offset += len(p.pages_vlm)
    return DocFeatures(
        question_ids=[q for p in parts for q in p.question_ids],
        q_text=np.concatenate([p.q_text for p in parts]),
        pages_vlm=np.concatenate([p.pages_vlm for p in parts]),
        pages_ocr=np.concatenate([p.pages_ocr for p in parts]),
        cands=cands,
        sparse_vlm=[s for p in parts for s in p.sparse_vlm],
        sparse_ocr=[s for p in parts for s in p.sparse_ocr],
        gold=[g for p in parts for g in p.gold],
        encode_ms=[m for p in parts for m in p.encode_ms],
    )


def merge_passage_features(parts: list[PassageFeatures]) -> PassageFeatures | None:
    """Several pools as one bigger pool: a question competes with the passages of every pool; BM25
    statistics are those of the joined pool; windows and photos stay centred on their own pool."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    from mmctr.retrieval.retrievers.bm25 import _Index

    offset, owners, golds = 0, [], []
    for p in parts:
        owners.append(p.owner + offset)
        golds += [g + offset for g in p.gold]
        offset += len(p.p_text)
    texts = [t for p in parts for t in p.texts]
    return PassageFeatures(
        question_ids=[q for p in parts for q in p.question_ids],
        q_text=np.concatenate([p.q_text for p in parts]),
        has_question=np.concatenate([p.has_question for p in parts]),
        q_photo=np.concatenate([p.q_photo for p in parts]),
        has_photo=np.concatenate([p.has_photo for p in parts]),
        p_text=np.concatenate([p.p_text for p in parts]),
        windows=np.concatenate([p.windows for p in parts]),  # each centred on its own pool's mean
        owner=np.concatenate(owners),
        texts=texts,
        bm25=_Index(texts),
        q_tokens=[t for p in parts for t in p.q_tokens],
        gold=golds,
        encode_ms=[m for p in parts for m in p.encode_ms],
    )
