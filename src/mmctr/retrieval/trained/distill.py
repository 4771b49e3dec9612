"""Distilling late interaction into one vector per candidate (Track 1): the student, its training
against the late-interaction teacher, and its run directory.

The teacher is a `late` retriever (`late`, or a token-pooled variant such as `late_pool`): the
MaxSim of the question's MiniLM token vectors against the candidate's. It needs no label, so any
question can be distilled.

The student keeps one 384-d float32 vector per page or passage:

    candidate vector  c = normalise(R_c(sum_i a_i x_i)),  a = softmax_i(x_i . w_c)
    query vector      q = normalise(R_q(sum_t b_t y_t)),  b = softmax_t(y_t . w_q)
    score(q, c)       = q . c

x_i are the candidate's frozen MiniLM token vectors, the very ones the teacher scores with and
caches (unpooled, whichever teacher); y_t the question's. w_c, w_q are learnt scoring vectors
(attention pooling) and R_c, R_q low-rank residual projections (`LowRankResidual` of the
two-tower model). Both start at zero, so the untrained student is the cosine of the two mean
token vectors. MaxSim is a sum over the query's tokens, and for a single candidate vector p,
sum_t (y_t . p) = (sum_t y_t) . p, so the mean query token is the natural start of the query side.

Loss per question: KL(teacher || student) over its candidates, the teacher's softmax taken of
MaxSim / (query tokens x temperature) (a per-token temperature: long and short questions alike),
the student's of scale x q . c (the scale learnt), plus `weight` x InfoNCE over the gold when
the question has one. The candidates of a question:
- MMDocIR: every page of its document (what it is ranked among at test time).
- M2KR: the teacher's `negatives` best passages of the whole pool, its gold when known, and
  `random_negatives` passages drawn afresh each step (they stand in for in-batch negatives: the
  teacher scores every passage of the pool once, so any draw has a teacher score).
M2KR queries with no question text (image-only) are left out: the teacher cannot rank them either;
the retriever hands them to the `image` retriever, as `late` does.

A share of the questions (`valid_share`) is held out. Each epoch their mean KL to the teacher is
measured, with their top-5 agreement with the teacher (the share of the teacher's top 5 that the
student's top 5 holds; M2KR over the whole pool) and, where gold is known, their task score (mean
of R@1/3/5). The epoch with the lowest held-out KL is kept; training stops `patience` epochs after.

A run directory: `retrieval_run.json` (kind, teacher, data, the retriever options the token
vectors need, the config), `config.json` (StudentConfig), `model.safetensors`, `metrics.json`
(per-epoch losses and held-out numbers, `train_seconds`, `teacher_seconds`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmctr.errors import ConfigError, DataError
from mmctr.outputs import OutputKind, check_out
from mmctr.retrieval.metrics import question_score
from mmctr.retrieval.retrievers.base import RetrieverOptions, doc_candidates, page_texts, query_text, top_k
from mmctr.retrieval.retrievers.late import LateInteractionRetriever
from mmctr.retrieval.trained.model import LowRankResidual
from mmctr.retrieval.trained.train import RUN_FILE, write_run

KIND = "mmctr retrieval distilled"
TEACHERS = ("late", "late_pool", "late_pool3")  # registry entries that are late-interaction retrievers
# Retriever options that shape the token vectors; a run records them and the retriever uses them.
TOKEN_OPTIONS = ("text_encoder", "doc_text", "query_instruction")
AGREEMENT_K = 5


def _is_distilled_run(p: Path) -> bool:
    try:
        return json.loads((p / RUN_FILE).read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


RUN_KIND = OutputKind(
    "distilled retrieval run",
    lambda p: p.is_dir() and (p / "model.safetensors").exists() and _is_distilled_run(p),
)


# ------------------------------------------------------------------------------------------------
# the student


@dataclass
class StudentConfig:
    dim: int = 384
    rank: int = 64  # of the low-rank residual projections
    temperature: float = 0.02  # the teacher's; the student's scale starts at its inverse

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AttentionPool(nn.Module):
    """Token rows of n texts -> one vector per text: softmax(rows . w)-weighted sum per text.
    w starts at zero (the mean); a text without rows gets the zero vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Parameter(torch.zeros(dim))

    def forward(self, rows: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
        # rows (N, D), segment (N,) in 0..n-1 -> (n, D)
        logits = rows @ self.score  # (N,)
        top = torch.full((n,), -torch.inf, dtype=rows.dtype).scatter_reduce(
            0, segment, logits, reduce="amax", include_self=False
        )  # (n,)
        e = torch.exp(logits - top[segment])  # (N,)
        z = torch.zeros(n, dtype=rows.dtype).index_add(0, segment, e)  # (n,)
        summed = torch.zeros((n, rows.shape[1]), dtype=rows.dtype).index_add(0, segment, e[:, None] * rows)
        return summed / z.clamp_min(1e-12)[:, None]  # (n, D)


class SingleVectorStudent(nn.Module):
    """Query and candidate towers over frozen token vectors; one unit vector per text."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        self.query_pool = AttentionPool(config.dim)
        self.doc_pool = AttentionPool(config.dim)
        self.query_proj = LowRankResidual(config.dim, config.rank)
        self.doc_proj = LowRankResidual(config.dim, config.rank)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)))

    def candidates(self, rows: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
        return self.doc_proj(self.doc_pool(rows, segment, n))  # (n, D)

    def queries(self, rows: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
        return self.query_proj(self.query_pool(rows, segment, n))  # (n, D)


@dataclass
class Tokens:
    """Token vectors of n texts as one matrix: text i owns rows offsets[i]:offsets[i+1]."""

    rows: torch.Tensor  # (N, D) float32
    offsets: np.ndarray  # (n + 1,) int64

    @classmethod
    def of(cls, mats: list[np.ndarray], dim: int) -> Tokens:
        offsets = np.zeros(len(mats) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([m.shape[0] for m in mats])
        rows = np.zeros((int(offsets[-1]), dim), dtype=np.float32)
        for i, m in enumerate(mats):
            rows[offsets[i] : offsets[i + 1]] = m
        return cls(torch.from_numpy(rows), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def select(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows of `items` stacked, (rows,) position of each row's item in `items`)."""
        lengths = self.offsets[items + 1] - self.offsets[items]
        starts = np.repeat(self.offsets[items] - np.cumsum(lengths) + lengths, lengths)
        index = starts + np.arange(int(lengths.sum()))
        segment = np.repeat(np.arange(len(items)), lengths)
        return self.rows[torch.from_numpy(index)], torch.from_numpy(segment)


def encode_all(tower, tokens: Tokens, items: np.ndarray | None = None, block: int = 512) -> torch.Tensor:
    """(len(items), D) vectors of `items` (default: all) through `tower`, `block` texts at a time."""
    items = np.arange(len(tokens)) if items is None else items
    out = []
    with torch.no_grad():
        for s in range(0, len(items), block):
            part = items[s : s + block]
            rows, segment = tokens.select(part)
            out.append(tower(rows, segment, len(part)))
    return torch.cat(out) if out else torch.zeros((0, tokens.rows.shape[1]))


def text_vectors(tower, mats: list[np.ndarray], dim: int) -> np.ndarray:
    """(n, dim) float32 unit vectors of n texts from their (n_tokens, dim) token matrices through
    `tower` (a student's `candidates` or `queries`): what the persistent index stores and searches."""
    return encode_all(tower, Tokens.of(mats, dim)).numpy()


# ------------------------------------------------------------------------------------------------
# what training reads: token vectors and the teacher's scores


@dataclass
class Question:
    kind: str  # "mmdocir" | "m2kr"
    query: int  # row of the query table
    cands: np.ndarray  # (c,) candidate rows: MMDocIR its document's pages; M2KR the teacher's top + gold
    teacher: np.ndarray  # (c,) teacher logits (MaxSim / query tokens / temperature)
    gold: np.ndarray  # (c,) bool; all False without labels
    pool: np.ndarray | None = None  # M2KR: (P,) teacher logits of every passage (for random draws)


@dataclass
class DistillData:
    candidates: Tokens  # pages first (document by document), then passages
    queries: Tokens
    questions: list[Question]
    passages: np.ndarray  # (P,) candidate rows of the M2KR pool
    counts: dict[str, int] = field(default_factory=dict)


def teacher_data(
    data, teacher: LateInteractionRetriever, temperature: float, top: int, log=print
) -> DistillData:
    """Token vectors of every page, passage and question of `data` (a Track1Data), and the teacher's
    logits over each question's candidates."""
    if not isinstance(teacher, LateInteractionRetriever):
        raise ConfigError(
            f"distill: the teacher must be a late-interaction retriever ({', '.join(TEACHERS)}), "
            f"not {type(teacher).__name__}"
        )
    enc = teacher.encoder
    options = teacher.options
    mats: list[np.ndarray] = []
    q_mats: list[np.ndarray] = []
    questions: list[Question] = []
    counts = {"mmdocir": 0, "m2kr": 0, "m2kr_image_only": 0}
    if data.docs is not None:
        docs = data.docs
        rows = doc_candidates(docs)
        order = [r for doc_rows in rows.values() for r in doc_rows]  # pages document by document
        span, start = {}, 0
        for doc, doc_rows in rows.items():
            span[doc] = (start, start + len(doc_rows))
            start += len(doc_rows)
        texts = page_texts(docs.pages, options.doc_text)
        log(f"teacher {teacher.name}: {len(order)} pages ...")
        page_mats = enc.items([texts[r] for r in order]).mats
        index, _, _ = teacher.index([texts[r] for r in order])  # pooled as the teacher pools
        qs = enc.queries([q.question for q in docs.questions]).mats
        row_of = {(docs.pages.doc_name[r], docs.pages.page_id[r]): j for j, r in enumerate(order)}
        for i, q in enumerate(docs.questions):
            a, b = span[q.doc_name]
            n_tok = max(1, qs[i].shape[0])
            logits = _finite(index.scores(qs[i].astype(np.float32), a, b) / (n_tok * temperature))  # (b - a,)
            gold = np.zeros(b - a, dtype=bool)
            for p in (docs.gold or {}).get(q.question_id, []):
                j = row_of.get((q.doc_name, p))
                if j is not None:
                    gold[j - a] = True
            questions.append(Question("mmdocir", len(q_mats), np.arange(a, b), logits, gold))
            q_mats.append(qs[i])
        mats += page_mats
        counts["mmdocir"] = len(docs.questions)
    passages = np.zeros(0, dtype=np.int64)
    if data.passages is not None:
        ps = data.passages
        base = len(mats)
        texts = [x or "" for x in ps.passages.text]
        log(f"teacher {teacher.name}: {len(texts)} passages ...")
        mats += enc.items(texts).mats
        index, _, _ = teacher.index(texts)
        passages = np.arange(base, base + len(texts))
        with_text = [q for q in ps.queries if q.question]
        counts["m2kr_image_only"] = len(ps.queries) - len(with_text)
        qs = enc.queries([query_text(q, options.query_instruction) for q in with_text]).mats
        row_of = {p: j for j, p in enumerate(ps.passages.passage_id)}
        for i, q in enumerate(with_text):
            n_tok = max(1, qs[i].shape[0])
            pool = _finite(index.scores(qs[i].astype(np.float32)) / (n_tok * temperature))  # (P,)
            gold = [row_of[p] for p in (ps.gold or {}).get(q.question_id, []) if p in row_of]
            picks = np.union1d(top_k(pool, top), np.asarray(gold, dtype=np.int64))
            questions.append(
                Question("m2kr", len(q_mats), base + picks, pool[picks], np.isin(picks, gold), pool)
            )
            q_mats.append(qs[i])
        counts["m2kr"] = len(with_text)
    if not questions:
        raise DataError(data.root, None, "no MMDocIR question and no M2KR question with text to distil")
    dim = enc.net.config.hidden_size if enc.net is not None else _dim(mats + q_mats)
    return DistillData(Tokens.of(mats, dim), Tokens.of(q_mats, dim), questions, passages, counts)


def _finite(logits: np.ndarray) -> np.ndarray:
    """A candidate without token vectors scores -inf in MaxSim; a large finite value keeps its
    teacher probability at 0 without NaN in the KL."""
    return np.where(np.isfinite(logits), logits, np.float32(-1e6)).astype(np.float32)


def _dim(mats: list[np.ndarray]) -> int:
    return max((m.shape[1] for m in mats if m.ndim == 2 and m.shape[0]), default=384)


# ------------------------------------------------------------------------------------------------
# training


@dataclass
class DistillConfig:
    teacher: str = "late"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    temperature: float = 0.02  # per query token: teacher logits = MaxSim / (tokens x temperature)
    weight: float = 0.0  # of the label InfoNCE beside the KL (0: the teacher alone)
    negatives: int = 32  # M2KR: the teacher's best passages per question
    random_negatives: int = 32  # M2KR: passages drawn from the pool per question and step
    rank: int = 64
    valid_share: float = 0.2
    patience: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.teacher not in TEACHERS:
            raise ConfigError(f"distill: teacher={self.teacher!r}; expected one of {', '.join(TEACHERS)}")
        if min(self.epochs, self.batch_size, self.negatives, self.rank) < 1:
            raise ConfigError("distill: epochs, batch_size, negatives and rank must be at least 1")
        if self.random_negatives < 0 or self.patience < 1:
            raise ConfigError("distill: random_negatives must be >= 0 and patience >= 1")
        if not self.temperature > 0:
            raise ConfigError(f"distill: temperature={self.temperature}; expected a positive number")
        if not self.weight >= 0:
            raise ConfigError(f"distill: weight={self.weight}; expected 0 or more")
        if not 0 <= self.valid_share < 1:
            raise ConfigError(f"distill: valid_share={self.valid_share}; expected 0 <= share < 1")


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) of one question's logits (c,) each."""
    p = F.softmax(teacher, 0)
    return torch.sum(p * (F.log_softmax(teacher, 0) - F.log_softmax(student, 0)))


def _nce(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(logits, 0) - torch.logsumexp(logits[gold], 0)


def evaluate(model: SingleVectorStudent, d: DistillData, questions: list[int]) -> dict[str, float]:
    """Held-out numbers of `questions`: mean KL to the teacher over their training candidates,
    top-5 agreement with the teacher (M2KR: over the whole pool) and, where gold is known, the
    task score. The same questions always see the same candidates (no random draws)."""
    model.eval()
    if not questions:
        return {"kl": 0.0, "agreement": 0.0, "questions": 0}
    with torch.no_grad():
        cand = encode_all(model.candidates, d.candidates)  # (n, D)
        qv = encode_all(model.queries, d.queries)  # (Q, D)
        scale = model.logit_scale.exp()
        kls, agree, task = [], [], []
        for i in questions:
            q = d.questions[i]
            s = cand[torch.from_numpy(q.cands)] @ qv[q.query] * scale  # (c,)
            kls.append(float(_kl(s, torch.from_numpy(q.teacher))))
            if q.pool is not None:  # M2KR: the whole pool, as at test time; positions in the pool
                full, truth = (cand[torch.from_numpy(d.passages)] @ qv[q.query]).numpy(), q.pool
                gold = set((q.cands[q.gold] - d.passages[0]).tolist())
            else:  # MMDocIR: positions among the document's pages
                full, truth = s.numpy(), q.teacher
                gold = set(np.flatnonzero(q.gold).tolist())
            mine, theirs = top_k(full, AGREEMENT_K), top_k(truth, AGREEMENT_K)
            agree.append(len(set(mine.tolist()) & set(theirs.tolist())) / max(1, len(theirs)))
            if gold:
                task.append(question_score(mine.tolist(), gold, "fractional" if q.pool is None else "hit"))
    out = {"kl": float(np.mean(kls)), "agreement": float(np.mean(agree)), "questions": len(questions)}
    if task:
        out["task_score"] = float(np.mean(task))
    return out


def train_student(
    d: DistillData, config: DistillConfig, progress: bool = True
) -> tuple[SingleVectorStudent, dict[str, Any]]:
    """Train the student on every question of `d` but the held-out share; the epoch with the lowest
    held-out KL is kept (the last one when nothing is held out)."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = SingleVectorStudent(
        StudentConfig(dim=int(d.candidates.rows.shape[1]), rank=config.rank, temperature=config.temperature)
    )
    order = rng.permutation(len(d.questions))
    n_valid = int(round(len(order) * config.valid_share))
    valid, train = sorted(order[:n_valid].tolist()), sorted(order[n_valid:].tolist())
    if not train:
        raise DataError("train split", None, "no question left to train on after the held-out share")
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = evaluate(model, d, valid)
    history: list[dict[str, Any]] = [{"epoch": 0, "loss": None, "kl": None, "held_out": start}]
    best, best_state, best_epoch, since = math.inf, None, 0, 0
    bar = tqdm(range(1, config.epochs + 1), desc="distil", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        steps = rng.permutation(train)
        losses, kls = [], []
        for s in range(0, len(steps), config.batch_size):
            batch = [d.questions[i] for i in steps[s : s + config.batch_size]]
            cands, teach, golds = [], [], []
            for q in batch:
                c, t, g = q.cands, q.teacher, q.gold
                if q.pool is not None and config.random_negatives:
                    extra = np.setdiff1d(rng.choice(len(q.pool), config.random_negatives), c - d.passages[0])
                    c = np.concatenate([c, d.passages[extra]])
                    t = np.concatenate([t, q.pool[extra]])
                    g = np.concatenate([g, np.zeros(len(extra), dtype=bool)])
                cands.append(c)
                teach.append(t)
                golds.append(g)
            uniq, inverse = np.unique(np.concatenate(cands), return_inverse=True)
            rows, segment = d.candidates.select(uniq)
            cv = model.candidates(rows, segment, len(uniq))  # (U, D)
            q_items = np.array([q.query for q in batch])
            q_rows, q_segment = d.queries.select(q_items)
            qv = model.queries(q_rows, q_segment, len(batch))  # (B, D)
            scale = model.logit_scale.exp().clamp(max=1000.0)
            loss, kl_sum, at = torch.zeros(()), 0.0, 0
            for j in range(len(batch)):
                pos = torch.from_numpy(inverse[at : at + len(cands[j])])
                at += len(cands[j])
                logits = cv[pos] @ qv[j] * scale  # (c,)
                kl = _kl(logits, torch.from_numpy(teach[j]))
                loss = loss + kl
                kl_sum += float(kl.detach())
                if config.weight > 0 and golds[j].any():
                    loss = loss + config.weight * _nce(logits, torch.from_numpy(golds[j]))
            loss = loss / len(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            kls.append(kl_sum / len(batch))
        held = evaluate(model, d, valid)
        history.append(
            {"epoch": epoch, "loss": float(np.mean(losses)), "kl": float(np.mean(kls)), "held_out": held}
        )
        bar.set_postfix(kl=f"{np.mean(kls):.3f}", held_out_kl=f"{held['kl']:.3f}")
        score = held["kl"] if valid else -epoch  # nothing held out: keep the last epoch
        if score < best - 1e-6 or best_state is None:
            best, best_epoch, since = score, epoch, 0
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
        "held_out_untrained": start,
        "held_out_best": history[best_epoch]["held_out"],
        "history": history,
        "train_questions": len(train),
        "held_out_questions": len(valid),
    }
    return model, summary


# ------------------------------------------------------------------------------------------------
# the run directory


def token_options(options: RetrieverOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in TOKEN_OPTIONS}


def distill_run(
    data_root: Path,
    out: Path,
    teacher: LateInteractionRetriever,
    config: DistillConfig,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """The student distilled from `teacher` (the registry's `config.teacher`, built by the caller)
    on the train split of `data_root`, written to `out` (see `save_run`); returns the metrics."""
    from mmctr.retrieval.data import load_train

    if teacher.name != config.teacher:
        raise ConfigError(f"distill: the teacher is {teacher.name!r} but the config names {config.teacher!r}")
    options = teacher.options
    check_out(out, RUN_KIND, overwrite)
    data = load_train(data_root)
    t0 = time.perf_counter()
    d = teacher_data(data, teacher, config.temperature, config.negatives, log=log)
    teacher_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    model, summary = train_student(d, config, progress=progress)
    metrics = {
        **summary,
        "questions": d.counts,
        "train_seconds": time.perf_counter() - t1,
        "teacher_seconds": teacher_seconds,
        "threads": torch.get_num_threads(),
    }
    run = {
        "kind": KIND,
        "teacher": config.teacher,
        "data": str(Path(data_root).resolve()),
        "retriever_options": token_options(options),
        "distill_config": asdict(config),
        "vector": {"dim": model.config.dim, "dtype": "float32"},
    }
    save_run(out, model, run, metrics, overwrite)
    return metrics


def save_run(
    out: Path,
    model: SingleVectorStudent,
    run: dict[str, Any],
    metrics: dict[str, Any],
    overwrite: bool = False,
) -> None:
    """Write the run directory (`mmctr.retrieval.trained.train.write_run`): `out` is either absent,
    the earlier run, or the whole new one; nothing half-written stays."""
    check_out(out, RUN_KIND, overwrite)
    write_run(out, RUN_KIND, model, {**run, "kind": KIND}, metrics, overwrite)


def load_student(run: Path) -> tuple[SingleVectorStudent, dict[str, Any]]:
    """The student of a run directory and its `retrieval_run.json`; named errors for what is missing
    or for a run of another command."""
    from safetensors.torch import load_file

    run = Path(run)
    if not run.is_dir():
        raise DataError(run, None, "not found; pass a run directory written by `mmctr retrieval distill`")
    info_path = run / RUN_FILE
    if not info_path.is_file():
        raise DataError(info_path, None, "not found; is this a run written by `mmctr retrieval distill`?")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(info_path, None, f"unreadable run file ({err})") from None
    kind = info.get("kind") if isinstance(info, dict) else None
    if kind != KIND:
        raise ConfigError(
            f"{run}: is a {kind or 'unknown'!r} run, not a distilled one (its {RUN_FILE} says kind "
            f"{kind!r}); the distilled retriever needs a run of `mmctr retrieval distill`"
            + (" (a run of `mmctr retrieval train` goes with --retriever trained)" if kind else "")
        )
    for name in ("config.json", "model.safetensors"):
        if not (run / name).is_file():
            raise DataError(run / name, None, "not found; the run is incomplete: distil it again")
    try:
        cfg = json.loads((run / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise DataError(run / "config.json", None, f"unreadable ({err})") from None
    known = {f.name for f in fields(StudentConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise DataError(run / "config.json", None, f"unknown key(s) {unknown}; known: {sorted(known)}")
    model = SingleVectorStudent(StudentConfig(**cfg))
    state = load_file(str(run / "model.safetensors"))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(run / "model.safetensors", None, f"does not fit config.json ({err})") from None
    model.eval()
    return model, info
