"""The hidden world behind a synthetic data set: items, users, histories, split rows and the true
click probability of every row. Everything is vectorised numpy over items, users and rows, so the
full scale (92k items, 1M users, 4M rows) builds in seconds; there is no Python loop per user or row.

Item arrays are indexed by item_id (row 0 is the padding item); user arrays by user index u, whose
user_id is u + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmctr.data.schema import EMB_DIM, N_LEVELS, SEQ_LEN, TAGS_LEN
from mmctr.data.synth.config import Scale, WorldParams
from mmctr.data.synth.words import N_TOPICS, make_titles

CHUNK = 1 << 18  # rows per vectorised block: bounds memory at full scale, and fixes the draw order


# ----------------------------------------------------------------------------------------------
# Small helpers


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _quantile_levels(x: np.ndarray) -> np.ndarray:
    """Equal-frequency bins of x into 0..N_LEVELS-1 (the *_level columns are quantile bins)."""
    ranks = np.empty(len(x), dtype=np.int64)
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    return ranks * N_LEVELS // len(x)


def _draw_rows(cum: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each entry of `rows`, draw a category from the row's cumulative distribution cum[row]."""
    out = np.empty(len(rows), dtype=np.int64)
    for lo in range(0, len(rows), CHUNK):
        c = cum[rows[lo : lo + CHUNK]]  # (c, K)
        r = rng.random(len(c), dtype=np.float32)
        out[lo : lo + CHUNK] = np.minimum((c < r[:, None]).sum(axis=1), cum.shape[1] - 1)
    return out


def _concentrated(n: int, k: int, max_fav: int, floor: float, rng: np.random.Generator) -> np.ndarray:
    """(n, k) preference rows: 1..max_fav favourites with Dirichlet(1) weights, plus a small floor
    spread over every category so that tastes are concentrated but never exclusive."""
    n_fav = rng.integers(1, max_fav + 1, size=n)
    fav = rng.random((n, k)).argsort(axis=1)[:, :max_fav]  # (n, max_fav) distinct categories
    weight = rng.gamma(1.0, size=(n, max_fav)) * (np.arange(max_fav) < n_fav[:, None])
    pref = np.zeros((n, k))
    np.put_along_axis(pref, fav, weight, axis=1)
    pref /= pref.sum(axis=1, keepdims=True)
    return ((1.0 - floor) * pref + floor / k).astype(np.float32)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with ties counted as one half (rank statistic; no sklearn needed)."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average rank of ties
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ----------------------------------------------------------------------------------------------
# Popularity-weighted sampling inside (topic, style) cells


@dataclass
class PoolSampler:
    """Draws items of one pool (warm or cold items) with probability proportional to popularity,
    within a (topic, style) cell, falling back to the topic and then to the whole pool when the
    cell is empty. Items are sorted by cell = topic * n_styles + style, so that every cell and
    every topic is one contiguous range of a single cumulative-popularity array."""

    order: np.ndarray  # (m,) item ids sorted by cell
    cum: np.ndarray  # (m + 1,) cumulative popularity along `order`
    cell_lo: np.ndarray  # (n_topics * n_styles,) range of each cell in `order`
    cell_hi: np.ndarray
    topic_lo: np.ndarray  # (n_topics,)
    topic_hi: np.ndarray
    n_styles: int

    @classmethod
    def build(
        cls, ids: np.ndarray, topic: np.ndarray, style: np.ndarray, pop: np.ndarray, n_styles: int
    ) -> PoolSampler:
        cell = topic[ids] * n_styles + style[ids]
        sort = np.argsort(cell, kind="stable")
        order, cell = ids[sort], cell[sort]
        cum = np.concatenate([[0.0], np.cumsum(pop[order])])
        cells = np.arange(N_TOPICS * n_styles)
        topics = np.arange(N_TOPICS) * n_styles
        return cls(
            order=order,
            cum=cum,
            cell_lo=np.searchsorted(cell, cells, "left"),
            cell_hi=np.searchsorted(cell, cells, "right"),
            topic_lo=np.searchsorted(cell, topics, "left"),
            topic_hi=np.searchsorted(cell, topics + n_styles, "left"),
            n_styles=n_styles,
        )

    def _in_range(self, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = self.cum[lo] + rng.random(len(lo)) * (self.cum[hi] - self.cum[lo])
        pos = np.searchsorted(self.cum, x, side="right") - 1
        return self.order[np.clip(pos, lo, hi - 1)]

    def by_taste(self, topic: np.ndarray, style: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cell = topic * self.n_styles + style
        lo, hi = self.cell_lo[cell], self.cell_hi[cell]
        empty = lo == hi
        lo[empty], hi[empty] = self.topic_lo[topic[empty]], self.topic_hi[topic[empty]]
        empty = lo == hi
        lo[empty], hi[empty] = 0, len(self.order)
        return self._in_range(lo, hi, rng)

    def by_popularity(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._in_range(np.zeros(n, np.int64), np.full(n, len(self.order)), rng)


# ----------------------------------------------------------------------------------------------
# Items


@dataclass
class Items:
    """Every item's hidden and visible attributes, indexed by item_id (row 0 = padding)."""

    topic: np.ndarray  # (n+1,) int64
    style: np.ndarray  # (n+1,) int64
    latent: np.ndarray  # (n+1, latent_dim) float32, unit norm; row 0 zeros
    log_pop: np.ndarray  # (n+1,) float64
    pop_z: np.ndarray  # (n+1,) standardised log popularity
    quality: np.ndarray  # (n+1,) hidden click effect; row 0 zero
    views_level: np.ndarray  # (n+1,) int64 0..10
    likes_level: np.ndarray  # (n+1,) int64 0..10
    tags: np.ndarray  # (n+1, TAGS_LEN) int64, left zero-padded
    emb: np.ndarray  # (n+1, EMB_DIM) float32, the provided item_emb_d128; row 0 zeros
    cold: np.ndarray  # (n+1,) bool
    titles: list[str]  # items 1..n

    @property
    def n(self) -> int:
        return len(self.topic) - 1


@dataclass(frozen=True)
class Prototypes:
    topic: np.ndarray  # (N_TOPICS, latent_dim)
    style: np.ndarray  # (n_styles, latent_dim)


def make_prototypes(params: WorldParams, rng: np.random.Generator) -> Prototypes:
    d = params.latent_dim
    # Entries ~ N(0, 1/d): each prototype has norm close to 1, so topic and style weigh alike.
    return Prototypes(
        topic=rng.normal(0.0, d**-0.5, size=(N_TOPICS, d)),
        style=rng.normal(0.0, d**-0.5, size=(params.n_styles, d)),
    )


def _make_tags(topic: np.ndarray, scale: Scale, params: WorldParams, rng: np.random.Generator) -> np.ndarray:
    """1..5 tags per item, ~tag_topic_share of them from the topic's own block of the vocabulary
    (Zipf-like within the block), the rest uniform over the vocabulary; sorted, left zero-padded."""
    n = len(topic)
    vocab = np.arange(1, scale.n_tags)
    blocks = np.array_split(rng.permutation(vocab), N_TOPICS)  # shuffled: tag ids hide the topic
    block_of = np.concatenate([np.full(len(b), t) for t, b in enumerate(blocks)])
    block_pop = np.concatenate([1.0 / np.arange(1, len(b) + 1) ** 0.8 for b in blocks])
    # A sampler over tag positions whose "topic" is the tag's block and popularity a Zipf weight.
    zeros = np.zeros(len(vocab), np.int64)
    tag_sampler = PoolSampler.build(
        ids=np.arange(len(vocab)), topic=block_of, style=zeros, pop=block_pop, n_styles=1
    )
    flat_tags = np.concatenate(blocks)
    n_tags = rng.choice(np.arange(1, TAGS_LEN + 1), size=n, p=[0.15, 0.25, 0.25, 0.2, 0.15])
    slot_topic = np.repeat(topic, TAGS_LEN)
    from_block = flat_tags[tag_sampler.by_taste(slot_topic, np.zeros_like(slot_topic), rng)]
    anywhere = rng.integers(1, scale.n_tags, size=n * TAGS_LEN)
    own = rng.random(n * TAGS_LEN) < params.tag_topic_share
    tags = np.where(own, from_block, anywhere).reshape(n, TAGS_LEN)
    tags[np.arange(TAGS_LEN)[None, :] >= n_tags[:, None]] = 0
    tags.sort(axis=1)
    tags[:, 1:][tags[:, 1:] == tags[:, :-1]] = 0  # a repeated tag is dropped, not duplicated
    tags.sort(axis=1)  # zeros first: left padding
    return tags


def make_items(scale: Scale, params: WorldParams, protos: Prototypes, rng: np.random.Generator) -> Items:
    n, d = scale.n_items, params.latent_dim
    topic = rng.integers(0, N_TOPICS, size=n)
    style = rng.integers(0, params.n_styles, size=n)
    eps = rng.normal(0.0, d**-0.5, size=(n, d))
    latent = _normalize(protos.topic[topic] + protos.style[style] + params.item_noise * eps)

    log_pop = rng.normal(0.0, params.pop_sigma, size=n)
    quality = rng.normal(0.0, params.quality_sd, size=n)
    views = _quantile_levels(log_pop + rng.normal(0.0, params.views_noise, size=n))
    likes = _quantile_levels(log_pop + rng.normal(0.0, params.likes_noise, size=n))
    cold = np.zeros(n, dtype=bool)
    cold[rng.choice(n, size=max(1, round(params.cold_share * n)), replace=False)] = True

    tags = _make_tags(topic, scale, params, rng)
    titles = make_titles(topic, rng)

    # The provided embedding: a fixed random linear map of the item's content (topic and style
    # prototypes) plus noise, like a PCA of text+image features: useful, but blurred, and the
    # image's style comes through weaker than the title's topic.
    content = np.concatenate([protos.topic[topic], params.emb_style_weight * protos.style[style]], axis=1)
    signal = content @ rng.normal(0.0, (2 * d) ** -0.5, size=(2 * d, EMB_DIM))
    emb = signal + rng.normal(0.0, params.emb_noise * signal.std(), size=signal.shape)
    emb /= emb.std()

    def pad(x: np.ndarray, fill: float | int = 0) -> np.ndarray:
        return np.concatenate([np.full((1, *x.shape[1:]), fill, dtype=x.dtype), x])

    return Items(
        topic=pad(topic),
        style=pad(style),
        latent=pad(latent.astype(np.float32)),
        log_pop=pad(log_pop),
        pop_z=pad((log_pop - log_pop.mean()) / log_pop.std()),
        quality=pad(quality),
        views_level=pad(views),
        likes_level=pad(likes),
        tags=pad(tags),
        emb=pad(emb.astype(np.float32)),
        cold=pad(cold, False),
        titles=titles,
    )


# ----------------------------------------------------------------------------------------------
# Users and their histories


@dataclass
class Users:
    topic_cum: np.ndarray  # (U, N_TOPICS) float32 cumulative topic preference
    style_cum: np.ndarray  # (U, n_styles) float32 cumulative style preference
    vector: np.ndarray  # (U, latent_dim) float32 unit preference vector p_u
    activity: np.ndarray  # (U,) relative rate at which the user shows up in split rows
    hist_offsets: np.ndarray  # (U+1,) int64: user u's history is hist_items[off[u]:off[u+1]]
    hist_items: np.ndarray  # (sum of lengths,) int64 item ids, most recent last

    @property
    def n(self) -> int:
        return len(self.activity)

    @property
    def hist_len(self) -> np.ndarray:
        return np.diff(self.hist_offsets)

    def history_keys(self, n_items: int) -> np.ndarray:
        """Sorted user * (n_items + 1) + item keys of every history click, for membership tests."""
        user = np.repeat(np.arange(self.n, dtype=np.int64), self.hist_len)
        return np.unique(user * (n_items + 1) + self.hist_items)

    def window(self, size: int) -> np.ndarray:
        """(U, size) int64 last `size` history items, right-aligned, 0 where the history is shorter."""
        take = np.minimum(self.hist_len, size)
        win = np.zeros((self.n, size), dtype=np.int64)
        rows = np.repeat(np.arange(self.n), take)
        start = np.repeat(np.cumsum(take) - take, take)
        within = np.arange(len(rows)) - start  # 0..take-1 inside each user's window
        src = np.repeat(self.hist_offsets[1:] - take, take) + within
        win[rows, size - np.repeat(take, take) + within] = self.hist_items[src]
        return win


def make_users(
    scale: Scale, params: WorldParams, protos: Prototypes, warm: PoolSampler, rng: np.random.Generator
) -> Users:
    u = scale.n_users
    topic_pref = _concentrated(u, N_TOPICS, params.max_fav_topics, params.pref_floor, rng)
    style_pref = _concentrated(u, params.n_styles, params.max_fav_styles, params.pref_floor, rng)
    vector = _normalize(topic_pref @ protos.topic + style_pref @ protos.style).astype(np.float32)
    activity = rng.lognormal(0.0, 0.75, size=u)

    length = 3 + np.floor(rng.lognormal(params.hist_mu, params.hist_sigma, size=u)).astype(np.int64)
    length = np.minimum(length, SEQ_LEN)
    offsets = np.concatenate([[0], np.cumsum(length)])
    slot_user = np.repeat(np.arange(u), length)
    topic_cum, style_cum = np.cumsum(topic_pref, axis=1), np.cumsum(style_pref, axis=1)
    # Cold items are absent from warm's pool, so they never appear in any history.
    items = warm.by_taste(_draw_rows(topic_cum, slot_user, rng), _draw_rows(style_cum, slot_user, rng), rng)
    return Users(
        topic_cum=topic_cum,
        style_cum=style_cum,
        vector=vector,
        activity=activity,
        hist_offsets=offsets,
        hist_items=items,
    )


# ----------------------------------------------------------------------------------------------
# Split rows: (user, target) pairs


def draw_targets(
    users: Users,
    rows: np.ndarray,
    pool: PoolSampler,
    hist_keys: np.ndarray,
    n_items: int,
    params: WorldParams,
    rng: np.random.Generator,
    retries: int = 8,
) -> np.ndarray:
    """A target item for each row's user: from the user's taste with probability
    pref_target_share, else by popularity; redrawn (a few times) while it is already in the user's
    history, since a target is something the user has not clicked yet."""
    target = np.empty(len(rows), dtype=np.int64)
    todo = np.arange(len(rows))
    for _ in range(retries + 1):
        u = rows[todo]
        by_taste = rng.random(len(todo)) < params.pref_target_share
        draw = pool.by_popularity(len(todo), rng)
        t = _draw_rows(users.topic_cum, u[by_taste], rng)
        s = _draw_rows(users.style_cum, u[by_taste], rng)
        draw[by_taste] = pool.by_taste(t, s, rng)
        target[todo] = draw
        key = u * (n_items + 1) + draw
        pos = np.minimum(np.searchsorted(hist_keys, key), len(hist_keys) - 1)
        todo = todo[hist_keys[pos] == key]
        if len(todo) == 0:
            break
    return target


def split_users(n_rows: int, users: Users, cover_all: bool, rng: np.random.Generator) -> np.ndarray:
    """User index of each row, drawn in proportion to activity. With cover_all (train), the first
    rows visit every user once, so every user has at least one training row."""
    p = users.activity / users.activity.sum()
    if not cover_all:
        return rng.choice(users.n, size=n_rows, p=p)
    first = rng.permutation(users.n)[:n_rows]
    rest = rng.choice(users.n, size=n_rows - len(first), p=p)
    return rng.permutation(np.concatenate([first, rest]))


# ----------------------------------------------------------------------------------------------
# The click model


@dataclass
class LogitParts:
    """The terms of each row's true logit, kept apart so that partial oracles can be scored."""

    match: np.ndarray  # <p_u, v_t>
    hist: np.ndarray  # H: soft max over the recent history of <v_t, v_h>
    pop: np.ndarray  # z(log pop_t)
    quality: np.ndarray  # q_t

    def logit(self, params: WorldParams, b0: float = 0.0) -> np.ndarray:
        return (
            b0
            + params.a_match * self.match
            + params.a_hist * self.hist
            + params.a_pop * self.pop
            + self.quality
        )

    def history_free(self, params: WorldParams) -> np.ndarray:
        """The logit of an oracle that knows the item but nothing about the user."""
        return params.a_pop * self.pop + self.quality


def logit_parts(
    items: Items,
    users: Users,
    window: np.ndarray,
    rows: np.ndarray,
    target: np.ndarray,
    params: WorldParams,
    rng: np.random.Generator,
) -> LogitParts:
    match = np.empty(len(rows))
    hist = np.empty(len(rows))
    for lo in range(0, len(rows), CHUNK):
        u, t = rows[lo : lo + CHUNK], target[lo : lo + CHUNK]
        vt = items.latent[t]  # (c, d)
        match[lo : lo + CHUNK] = np.einsum("cd,cd->c", users.vector[u], vt)
        win = window[u]  # (c, W)
        sim = np.einsum("cd,cwd->cw", vt, items.latent[win])  # (c, W)
        score = np.where(win > 0, params.beta * sim, -np.inf)
        w = np.exp(score - score.max(axis=1, keepdims=True))
        hist[lo : lo + CHUNK] = (w * sim).sum(axis=1) / w.sum(axis=1)
    return LogitParts(
        match=match,
        hist=hist,
        pop=items.pop_z[target],
        quality=items.quality[target],
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def click_probability(logit: np.ndarray, noise_sd: float, nodes: int = 24) -> np.ndarray:
    """P(click) = E[sigmoid(logit + e)] with per-row noise e ~ N(0, noise_sd^2), by Gauss-Hermite
    quadrature. The row noise is integrated out rather than drawn: it is part of the coin flip, so
    the probability written to truth/ is the best any model could know, and the oracle AUC is an
    attainable ceiling, not one inflated by noise no feature carries."""
    if noise_sd <= 0:
        return sigmoid(logit)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2/2)
    w = w / w.sum()
    out = np.zeros_like(logit, dtype=np.float64)
    for xi, wi in zip(x, w, strict=True):
        out += wi * sigmoid(logit + noise_sd * xi)
    return out


def calibrate_b0(logit_wo_b0: np.ndarray, target_rate: float, noise_sd: float = 0.0) -> float:
    """The intercept that makes the mean click probability equal target_rate (bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if click_probability(logit_wo_b0 + mid, noise_sd, nodes=8).mean() < target_rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0
