"""Blocks shared by the CTR models, written once: the item encoder, MLP, target attention, cross
network, squeeze-excitation. Small parts first."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmctr.data.reader import ItemTable
from mmctr.data.schema import N_LEVELS

# ----------------------------------------------------------------------------------------------
# configuration every model shares


@dataclass
class FeatureConfig:
    """How items and users become vectors; every model's config starts with these fields."""

    embedding_dim: int = 64
    use_tags: bool = True  # item_tags, mean-pooled, as part of every item vector
    use_user_id: bool = False  # the baseline treats user_id as meta (not embedded)
    user_buckets: int = 262_144  # user ids are hashed into this many embedding rows
    hist_levels: bool = False  # attach likes/views levels (from item_feature) to every item vector


class BankDropout(nn.Module):
    """Dropout whose masks are rows drawn from a bank refreshed every `refresh` calls.

    On a CPU, drawing one random number per activation costs more than the matmul it follows
    (~7 ns/element against ~3 ns/element for a 512-wide layer here); drawing one row index per
    sample and gathering a stored mask costs a copy. Rows of a batch get independent masks from the
    bank; the bank itself is redrawn often, so no unit is dropped together with another for long.
    """

    def __init__(self, p: float, bank_rows: int = 4096, refresh: int = 16):
        super().__init__()
        self.p, self.bank_rows, self.refresh = p, bank_rows, refresh
        self._bank: torch.Tensor | None = None
        self._calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        width = x.shape[-1]
        if (
            self._bank is None
            or self._bank.shape[1] != width
            or self._calls % self.refresh == 0
            or self._bank.device != x.device
        ):
            keep = torch.rand(self.bank_rows, width, device=x.device) >= self.p
            self._bank = keep.to(x.dtype) / (1 - self.p)
        self._calls += 1
        flat = x.reshape(-1, width)
        idx = torch.randint(self.bank_rows, (flat.shape[0],), device=x.device)
        return (flat * self._bank.to(x.dtype)[idx]).reshape(x.shape)

    # The bank and the call count are state outside the weights: a checkpoint saves them, so that
    # resumed training draws the same masks as training never interrupted.
    def train_state(self) -> dict:
        bank = self._bank if self._bank is not None else torch.empty(0)
        return {"bank": bank.detach().cpu().clone(), "calls": self._calls}

    def load_train_state(self, state: dict) -> None:
        self._bank = state["bank"] if state["bank"].numel() else None
        self._calls = int(state["calls"])


class MLP(nn.Sequential):
    """Linear → [BatchNorm] → ReLU → [Dropout], per hidden layer; no output layer."""

    def __init__(
        self, in_dim: int, hidden: tuple[int, ...] | list[int], dropout: float = 0.0, batch_norm: bool = False
    ):
        layers: list[nn.Module] = []
        for h in hidden:
            layers.append(nn.Linear(in_dim, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(BankDropout(dropout))
            in_dim = h
        super().__init__(*layers)
        self.out_dim = in_dim


# ----------------------------------------------------------------------------------------------
# items


class ItemEncoder(nn.Module):
    """An item id → id embedding ⊕ mean tag embedding ⊕ projected frozen embedding [⊕ levels].

    The item table (tags, frozen embedding, levels) lives in non-persistent buffers: a run directory
    stores it once beside the weights, and Task 1 swaps it without touching the learned weights.
    """

    def __init__(self, cfg: FeatureConfig, items: ItemTable):
        super().__init__()
        d = cfg.embedding_dim
        self.cfg = cfg
        self.register_buffer("item_tags", torch.as_tensor(items.tags, dtype=torch.long), persistent=False)
        self.register_buffer("item_emb", torch.tensor(items.emb, dtype=torch.float32), persistent=False)
        self.register_buffer("item_likes", torch.as_tensor(items.likes, dtype=torch.long), persistent=False)
        self.register_buffer("item_views", torch.as_tensor(items.views, dtype=torch.long), persistent=False)
        self.id_emb = nn.Embedding(items.n_items, d, padding_idx=0)
        self.tag_emb = nn.Embedding(items.n_tags, d, padding_idx=0) if cfg.use_tags else None
        self.proj = nn.Linear(items.emb_dim, d)
        if cfg.hist_levels:
            self.likes_emb = nn.Embedding(N_LEVELS, d)
            self.views_emb = nn.Embedding(N_LEVELS, d)
        self.out_dim = d * (2 + int(cfg.use_tags) + 2 * int(cfg.hist_levels))
        nn.init.normal_(self.id_emb.weight, std=1e-2)
        if self.tag_emb is not None:
            nn.init.normal_(self.tag_emb.weight, std=1e-2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Item vectors for `ids` of any shape. Each distinct id is encoded once: a batch's
        histories repeat the same items many times."""
        uniq, inv = torch.unique(ids, return_inverse=True)
        return self.encode(uniq).index_select(0, inv.reshape(-1)).reshape(*ids.shape, self.out_dim)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        parts = [self.id_emb(ids), self.proj(self.item_emb[ids])]  # (..., d) each
        if self.tag_emb is not None:
            tags = self.item_tags[ids]  # (..., 5)
            n = (tags > 0).sum(-1, keepdim=True).clamp(min=1)
            parts.append(self.tag_emb(tags).sum(-2) / n)  # padding rows of tag_emb are zero
        if self.cfg.hist_levels:
            parts += [self.likes_emb(self.item_likes[ids]), self.views_emb(self.item_views[ids])]
        return torch.cat(parts, dim=-1)  # (..., out_dim)

    def embedding_tables(self) -> list[nn.Embedding]:
        tables = [self.id_emb] + ([self.tag_emb] if self.tag_emb is not None else [])
        if self.cfg.hist_levels:
            tables += [self.likes_emb, self.views_emb]
        return tables


class UserEmbedding(nn.Module):
    """user_id hashed into a fixed number of rows, so unseen users need no vocabulary."""

    def __init__(self, buckets: int, dim: int):
        super().__init__()
        self.buckets = buckets
        self.emb = nn.Embedding(buckets, dim)
        nn.init.normal_(self.emb.weight, std=1e-2)

    def forward(self, user_id: torch.Tensor) -> torch.Tensor:
        return self.emb(torch.remainder(user_id, self.buckets))


class RateTable(nn.Module):
    """A counting feature: the smoothed positive rate of each row of a key (an item, a user bucket)
    in the train split, as a logit. rate = (positives + m * prior) / (rows + m), so a key seen a few
    times stays near the train prior. Filled by `fit` from the train split; the counts are buffers
    (saved with the run), not parameters. In training, a row's own label is taken out of its key's
    counts (leave-one-out), so the fit of the weights above this table sees the same kind of rate a
    valid row gets, not one that already contains its answer."""

    def __init__(self, rows: int, smoothing: float):
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("pos", torch.zeros(rows))
        self.register_buffer("count", torch.zeros(rows))
        self.register_buffer("prior", torch.tensor(0.5))

    def fit(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        n = self.pos.shape[0]
        self.pos.copy_(torch.bincount(keys, weights=labels.double(), minlength=n).float())
        self.count.copy_(torch.bincount(keys, minlength=n).float())
        self.prior.fill_(float(labels.double().mean()) if labels.numel() else 0.5)

    def forward(self, keys: torch.Tensor, own_label: torch.Tensor | None = None) -> torch.Tensor:
        pos, count = self.pos[keys], self.count[keys]  # (B,)
        if own_label is not None:  # leave-one-out for train rows
            seen = count > 0
            pos = torch.where(seen, pos - own_label, pos)
            count = torch.where(seen, count - 1, count)
        m = self.smoothing
        rate = (pos + m * self.prior) / (count + m)
        return torch.logit(rate.clamp(1e-4, 1 - 1e-4))  # (B,)


class RowContext(nn.Module):
    """The per-row fields every model puts beside its item vectors: the target's likes and views
    levels (categorical, width `level_dim`, default embedding_dim) and, when `use_user_id` is on, the
    hashed user id (width embedding_dim). Calling it gives the list of those (B, ·) vectors."""

    def __init__(self, cfg: FeatureConfig, level_dim: int | None = None):
        super().__init__()
        d, ld = cfg.embedding_dim, level_dim or cfg.embedding_dim
        self.likes_emb = nn.Embedding(N_LEVELS, ld)
        self.views_emb = nn.Embedding(N_LEVELS, ld)
        self.user_emb = UserEmbedding(cfg.user_buckets, d) if cfg.use_user_id else None
        self.out_dim = 2 * ld + (d if cfg.use_user_id else 0)
        self.n_fields = 2 + int(cfg.use_user_id)

    def forward(self, batch) -> list[torch.Tensor]:  # batch: mmctr.data.batches.Batch
        out = [self.likes_emb(batch.likes), self.views_emb(batch.views)]
        if self.user_emb is not None:
            out.append(self.user_emb(batch.user_id))
        return out

    def embedding_tables(self) -> list[nn.Embedding]:
        return [self.likes_emb, self.views_emb] + ([self.user_emb.emb] if self.user_emb is not None else [])


# ----------------------------------------------------------------------------------------------
# packed histories: work only over real positions (mean history ~8 of up to 100 slots)


@dataclass
class Packed:
    rows: torch.Tensor  # (P,) which batch row each real position belongs to
    ids: torch.Tensor  # (P,) item ids at real positions


def pack(hist: torch.Tensor) -> Packed:
    rows, cols = (hist > 0).nonzero(as_tuple=True)
    return Packed(rows=rows, ids=hist[rows, cols])


# A request's history is padded up to a multiple of this, so requests meet few distinct shapes.
REQUEST_BUCKET = 8


def request_history(hist: torch.Tensor, bucket: int = REQUEST_BUCKET) -> tuple[torch.Tensor, int]:
    """A request's one history (row 0 of `hist`; every row holds the same) → its real items, most
    recent last, with item 0 appended up to a multiple of `bucket` (at least one bucket), and how
    many are real. The request paths mask the padding out, so requests meet few shapes."""
    h = hist[0]
    h = h[h > 0]
    n = int(h.shape[0])
    return F.pad(h, (0, -(-max(n, 1) // bucket) * bucket - n)), n


def encode_request(items: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A request's candidates and its one history, each encoded once by `items` (an ItemEncoder):
    targets (N, D), keys (L', D) zero after the `n` real ones (`request_history`'s padding), n."""
    padded, n = request_history(batch.hist)
    keys = items(padded)  # (L', D)
    keys[n:] = 0  # item 0 would encode to the projection's bias
    return items(batch.item_id), keys, n


CHUNK_BYTES = 2 << 20  # the size of one chunk's hidden layer in `TargetAttention.forward_shared`


def relu_sign_(x: torch.Tensor) -> torch.Tensor:
    """In-place ReLU on the sign bit: the tensor viewed as integers of its width, clamped at 0. For
    IEEE floats the values are ReLU's exactly (negatives become +0.0; -0.0 becomes +0.0 where
    torch.relu keeps -0.0; a NaN with its sign bit set becomes 0, where torch.relu keeps it). On
    bf16 it ran in a fifth of `relu_`'s time here (41 vs 215 µs on 1,008 × 512), since integer
    lanes need no conversion to fp32 and back. Other dtypes and non-contiguous tensors fall back to
    `relu_`."""
    ints = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}
    if x.dtype in ints and x.is_contiguous():
        x.view(ints[x.dtype]).clamp_min_(0)
        return x
    return x.relu_()


class TargetAttention(nn.Module):
    """DIN's target attention: score(q, k) = MLP([q, k, q−k, q·k]); output Σ score·k over real
    history positions (softmax optional; the baseline uses none).

    The first layer is applied split: W[q,k,q−k,q·k] = (Wq+Wd)q + (Wk−Wd)k + Wp(q·k), so the q part is
    computed once per row and the k part once per position; only Wp(q·k) is per pair. Same maths,
    same parameters as one Linear over the concatenation.
    """

    def __init__(
        self, dim: int, hidden: tuple[int, ...] = (512, 256), dropout: float = 0.0, softmax: bool = False
    ):
        super().__init__()
        self.first = nn.Linear(4 * dim, hidden[0])
        self.rest = MLP(hidden[0], hidden[1:], dropout=dropout)
        self.drop = BankDropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(self.rest.out_dim, 1)
        self.softmax = softmax
        self.dim = dim

    def scores(
        self, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, key_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """q (B, D) targets; k (P, D) packed history items; rows (P,) → (P,) raw scores.
        With `key_index` (P,), k is a table of distinct items (U, D) and position p's key is
        k[key_index[p]]: the key part of the first layer is then computed once per distinct item."""
        w_target, w_key, wp = self.split_first()
        hq = F.linear(q, w_target, self.first.bias)  # (B, H)
        hk = F.linear(k, w_key)  # (P, H) or (U, H)
        if key_index is not None:
            hk = hk.index_select(0, key_index)  # (P, H)
            k = k.index_select(0, key_index)  # (P, D)
        hp = F.linear(q.index_select(0, rows) * k, wp)  # (P, H)
        h = self.drop(F.relu(hq.index_select(0, rows) + hk + hp))
        return self.out(self.rest(h)).squeeze(-1)  # (P,)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, key_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled history (B, D) for targets q (B, D) and packed keys k (P, D) of batch rows `rows`
        (or distinct keys k (U, D) and `key_index`, as in `scores`)."""
        s = self.scores(q, k, rows, key_index)  # (P,)
        if key_index is not None:
            k = k.index_select(0, key_index)  # (P, D)
        if self.softmax:
            s = segment_softmax(s, rows, q.shape[0])
        pooled = q.new_zeros(q.shape[0], k.shape[1])
        return pooled.index_add(0, rows, s.unsqueeze(-1).to(k.dtype) * k)  # (B, D)

    def split_first(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's weight as (Wq+Wd, Wk−Wd, Wp), (H, D) each: the target's, the key's and
        the per-pair (q·k) part of W[q, k, q−k, q·k]."""
        wq, wk, wd, wp = self.first.weight.split(self.dim, dim=1)
        return wq + wd, wk - wd, wp

    def item_parts(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's per-item parts for items k (U, D): as a target, (Wq+Wd)k + b, and as a
        history key, (Wk−Wd)k; (U, H) each. A serving copy computes them once for every item."""
        w_target, w_key, _ = self.split_first()
        return F.linear(k, w_target, self.first.bias), F.linear(k, w_key)

    def forward_shared(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        n_keys: int | None = None,
        pairs_per_chunk: int | None = None,
        hq: torch.Tensor | None = None,
        hk: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One request: N targets q (N, D) against ONE history k (L, D) → (N, D). The history's part
        of the first layer is computed once, not once per candidate; `hq` (N, H) and `hk` (L, H), the
        items' parts from `item_parts`, may be given precomputed.

        Only the first `n_keys` rows of k are real (default: all); the rest is padding that the caller
        added so that L takes few distinct values (oneDNN compiles a kernel per new shape, and a
        request that meets a new shape waits for it). Padded positions get no weight.

        Candidates go through in chunks of about `pairs_per_chunk` (candidate, history item) pairs,
        so that each chunk's (c, L, H) hidden layer stays in the core's cache for the add, the ReLU
        and the next layer: at L=43 and N=100 the unchunked (N, L, 512) tensor is 4.4 MB in bf16 and
        every pass over it went to memory. The default sizes a chunk's hidden layer at CHUNK_BYTES
        (2 MiB, this machine's L2 per core): 2,048 pairs at H=512 in bf16, 8,192 at H=128. Against
        a fixed 1,024 pairs that took the served DIN's p99 from 14.8 to 13.0 ms, and the DIN with
        a 128-64 attention's from 6.1 to 5.8 ms (same process, requests interleaved)."""
        L, N = k.shape[0], q.shape[0]
        n_keys = L if n_keys is None else n_keys
        if n_keys == 0:  # no history: nothing to pool (and a softmax over no positions would be NaN)
            return q.new_zeros(N, k.shape[1])
        if hq is None or hk is None:
            w_target, w_key, _ = self.split_first()
            hq, hk = F.linear(q, w_target, self.first.bias), F.linear(k, w_key)  # (N, H), (L, H)
        # the q·k part, the only per-pair one; a slice, so a request with precomputed hq/hk does
        # no work on the weights
        wp = self.first.weight[:, 3 * self.dim :]
        if wp.dtype != hq.dtype:  # under bf16 autocast, which does not reach addmm_ (nor x below)
            wp = wp.to(hq.dtype)
        H = wp.shape[0]
        if pairs_per_chunk is None:
            pairs_per_chunk = max(256, CHUNK_BYTES // (H * q.element_size()))
        step = max(1, pairs_per_chunk // max(1, L))
        scores = []
        for lo in range(0, N, step):
            qc = q[lo : lo + step]
            c = qc.shape[0]
            # q and k parts summed into one buffer, then the per-pair product accumulated onto it by
            # the matmul itself, in place (addmm_): no separate add and no copy of a (c·L, H) tensor
            base = (hq[lo : lo + step].unsqueeze(1) + hk.unsqueeze(0)).view(c * L, H)
            x = (qc.unsqueeze(1) * k.unsqueeze(0)).view(c * L, -1).to(base.dtype)
            h = relu_sign_(base.addmm_(x, wp.t()))
            scores.append(self.out(self.rest(h)).view(c, L))  # (c, L)
        s = torch.cat(scores) if len(scores) > 1 else scores[0]  # (N, L)
        if n_keys < L:
            s = s.masked_fill(
                torch.arange(L, device=s.device) >= n_keys, float("-inf") if self.softmax else 0.0
            )
        if self.softmax:
            s = torch.softmax(s, dim=-1)
        return s.to(k.dtype) @ k  # (N, D)


# ----------------------------------------------------------------------------------------------
# feature interaction blocks


class CrossNetV2(nn.Module):
    """DCNv2 cross layers: x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l.

    With `rank` > 0 each W_l is the product of two thin matrices, U_l (dim × rank) · V_l (rank ×
    dim), as DCN-V2's low-rank variant: 2·dim·rank weights a layer instead of dim². `mmctr prune
    --cross-rank` makes one from a trained full-rank network (truncated SVD of each W_l)."""

    def __init__(self, dim: int, n_layers: int = 3, rank: int = 0):
        super().__init__()
        self.dim, self.rank = dim, rank
        if rank > 0:
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim)) for _ in range(n_layers)
            )
        else:
            self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class SqueezeExcitation(nn.Module):
    """SENet over F field vectors (B, F, D): re-weights each field by a learned gate."""

    def __init__(self, n_fields: int, reduction: int = 3):
        super().__init__()
        mid = max(1, n_fields // reduction)
        self.gate = nn.Sequential(nn.Linear(n_fields, mid), nn.ReLU(), nn.Linear(mid, n_fields), nn.Sigmoid())

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        z = fields.mean(dim=-1)  # (B, F)
        return fields * self.gate(z).unsqueeze(-1)  # (B, F, D)


# ----------------------------------------------------------------------------------------------
# padded histories: what sequence models (transformers) need, built from the packed item vectors


@dataclass
class LengthGroup:
    """Rows of a batch whose histories all fit in their last `width` columns."""

    rows: torch.Tensor  # (b,) batch rows
    width: int
    pad: torch.Tensor  # (b, width) True = padding
    positions: torch.Tensor  # (p,) which of the batch's packed real positions belong to these rows
    at: tuple[torch.Tensor, torch.Tensor]  # (p,), (p,): their row and column in the (b, width) layout

    def layout(self, packed: torch.Tensor) -> torch.Tensor:
        """packed (P, E), one vector per real position of the batch → (b, width, E), zeros at padding
        (ItemEncoder maps id 0 to a non-zero vector, so padding is never encoded)."""
        out = packed.new_zeros(len(self.rows), self.width, packed.shape[-1])
        return out.index_put(self.at, packed.index_select(0, self.positions))


class LengthGroups:
    """A left-padded history (B, L) cut into groups of rows of similar length, for sequence models.

    A batch is as wide as its longest history (64 here, while the typical one holds 6 items), so a
    transformer over the whole (B, L) layout spends most of its time on padding. Each group is as
    wide as its own longest row (at least `min_width`). The real positions are listed once, row-major
    like pack(), in `ids`: items are encoded once per batch, then each group lays out its rows.
    Splitting changes nothing as long as a row's output does not depend on how much left padding it
    carries, which tests/test_models.py checks for every model.
    """

    def __init__(
        self, hist: torch.Tensor, edges: tuple[int, ...] = (4, 6, 8, 12, 16, 24, 32, 48), min_width: int = 1
    ):
        real = hist > 0  # (B, L)
        rows, cols = real.nonzero(as_tuple=True)  # (P,) each
        self.ids = hist[rows, cols]  # (P,)
        lengths = real.sum(dim=1)  # (B,)
        group = torch.bucketize(lengths, torch.tensor(edges, device=hist.device))  # (B,)
        local = torch.empty_like(lengths)  # each row's index inside its group
        L = hist.shape[1]
        self.groups: list[LengthGroup] = []
        for g in group.unique().tolist():
            idx = (group == g).nonzero().squeeze(1)  # (b,)
            width = max(int(lengths[idx].max()), min_width)
            local[idx] = torch.arange(len(idx), device=hist.device)
            positions = (group[rows] == g).nonzero().squeeze(1)  # (p,)
            at = (local[rows[positions]], cols[positions] - (L - width))
            part = F.pad(hist[idx], (max(width - L, 0), 0))[:, -width:]  # (b, width)
            self.groups.append(LengthGroup(idx, width, part == 0, positions, at))

    def gather(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """One result (b, ...) per group, in `groups` order → (B, ...) in batch row order."""
        order = torch.cat([g.rows for g in self.groups])
        where = torch.empty_like(order)
        where[order] = torch.arange(len(order), device=order.device)
        return torch.cat(parts).index_select(0, where)


def attention_mask(pad: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Boolean mask for F.scaled_dot_product_attention, (B, 1, L, L), True = may attend.

    A real query sees real keys only (and, when causal, only earlier ones). A padding query sees
    itself alone: a query that may attend to nothing makes softmax return NaN, and NaN at a padding
    position would leak into real positions through the next layer's value sum (0 · NaN = NaN).
    """
    L = pad.shape[1]
    allowed = (~pad).unsqueeze(1).expand(-1, L, -1)  # (B, L_query, L_key)
    if causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=pad.device).tril()
    eye = torch.eye(L, dtype=torch.bool, device=pad.device)
    return (allowed | eye).unsqueeze(1)  # (B, 1, L, L)


class RecentPositions(nn.Embedding):
    """Learned position embeddings counted from the most recent item backwards.

    Histories are left-padded with the most recent item last, so counting from the right gives every
    real item the same position however much padding a batch carries.
    """

    def __init__(self, max_len: int, dim: int):
        super().__init__(max_len, dim)
        nn.init.normal_(self.weight, std=1e-2)

    def forward(self, length: int) -> torch.Tensor:  # type: ignore[override]
        back = torch.arange(length - 1, -1, -1, device=self.weight.device).clamp(max=self.num_embeddings - 1)
        return super().forward(back)  # (L, D): row L-1 is the most recent position


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + feed-forward block over a padded (B, L, D) sequence."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads; change one of them")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.drop = BankDropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D); mask (B, 1, L, L) from attention_mask()."""
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, D // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, D/H) each
        # Written out rather than F.scaled_dot_product_attention: for these short sequences and
        # narrow heads the CPU flash kernel's backward is several times slower than two bmm's.
        s = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5  # (B, H, L, L)
        w = s.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # every row allows >= 1 key
        a = w.to(v.dtype) @ v  # (B, H, L, D/H)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, D)))
        return x + self.drop(self.ffn(self.norm2(x)))  # (B, L, D)


# ----------------------------------------------------------------------------------------------
# target attention over packed histories, several heads


def segment_softmax(s: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of s (P,) or (P, H) within each group of positions sharing a row id (rows (P,))."""
    idx = rows.view(-1, *([1] * (s.dim() - 1))).expand_as(s)
    peak = s.new_full((n, *s.shape[1:]), float("-inf")).scatter_reduce(
        0, idx, s, reduce="amax", include_self=True
    )
    e = torch.exp(s - peak[rows])
    total = e.new_zeros(n, *s.shape[1:]).index_add(0, rows, e)
    return e / total[rows]


class MultiHeadTargetAttention(nn.Module):
    """The target queries its own real history positions with scaled dot products, per head.

    weights="softmax": normalised over the row's history (the Task-2 award's multi-head target
    attention). weights="relu": ReLU of the scaled score, not normalised, so an irrelevant history
    adds nothing and a long relevant one adds more (QIN's adaptive sparse target attention).
    Returns (B, out_dim); a row without history gets the output bias only.
    """

    def __init__(self, dim: int, att_dim: int, heads: int, out_dim: int, weights: str = "softmax"):
        super().__init__()
        if att_dim % heads:
            raise ValueError(
                f"attention width {att_dim} is not divisible by {heads} heads; change one of them"
            )
        if weights not in ("softmax", "relu"):
            raise ValueError(f"weights must be 'softmax' or 'relu', got {weights!r}")
        self.heads, self.weights = heads, weights
        self.q = nn.Linear(dim, att_dim)
        self.kv = nn.Linear(dim, 2 * att_dim)
        self.out = nn.Linear(att_dim, out_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """q (B, D) targets; k (P, D) packed history items of batch rows `rows` (P,)."""
        B, P, H = q.shape[0], k.shape[0], self.heads
        qh = self.q(q).view(B, H, -1)  # (B, H, A/H)
        # the width spelled out: a batch without any history has P = 0, where -1 is ambiguous
        kh, vh = self.kv(k).view(P, 2, H, qh.shape[-1]).unbind(1)  # (P, H, A/H) each
        s = (qh.index_select(0, rows) * kh).sum(-1).float() / qh.shape[-1] ** 0.5  # (P, H)
        w = segment_softmax(s, rows, B) if self.weights == "softmax" else F.relu(s)  # (P, H)
        pooled = s.new_zeros(B, H, vh.shape[-1]).index_add(0, rows, w.unsqueeze(-1) * vh.float())
        return self.out(pooled.view(B, -1).to(q.dtype))  # (B, out_dim), back in the weights dtype

    def forward_shared(self, q: torch.Tensor, k: torch.Tensor, n_keys: int | None = None) -> torch.Tensor:
        """One request: N targets q (N, D) against ONE history k (L, D) → (N, out_dim). The keys and
        values are projected once, not once per candidate as in `forward` over a batch of N rows
        that repeat the history. Only the first `n_keys` rows of k are real (default: all); the
        padding after them gets no weight."""
        N, L, H = q.shape[0], k.shape[0], self.heads
        n_keys = L if n_keys is None else n_keys
        qh = self.q(q).view(N, H, -1).transpose(0, 1)  # (H, N, A/H)
        if n_keys == 0:  # no history: the output bias only, as `forward` gives such a row
            return self.out(q.new_zeros(N, H * qh.shape[-1]))
        kh, vh = self.kv(k).view(L, 2, H, -1).permute(1, 2, 0, 3)  # (H, L, A/H) each
        s = (qh @ kh.transpose(1, 2)).float() / qh.shape[-1] ** 0.5  # (H, N, L)
        pad = torch.arange(L, device=k.device) >= n_keys  # (L,)
        if self.weights == "softmax":
            w = torch.softmax(s.masked_fill(pad, float("-inf")), dim=-1)
        else:
            w = F.relu(s).masked_fill(pad, 0.0)
        pooled = (w @ vh.float()).transpose(0, 1).reshape(N, -1)  # (N, A)
        return self.out(pooled.to(q.dtype))  # (N, out_dim)


# ----------------------------------------------------------------------------------------------
# quadratic interactions


class QuadraticLayer(nn.Module):
    """y = norm((U x + a) ⊙ (V x + b)): every output unit is a quadratic form of the input, so a
    stack of L layers reaches interactions of order 2^L without an activation function."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.uv = nn.Linear(in_dim, 2 * out_dim)
        self.norm = nn.LayerNorm(out_dim)  # keeps products of products from growing without bound
        self.drop = BankDropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.uv(x).chunk(2, dim=-1)  # (B, out) each
        return self.drop(self.norm(u * v))  # (B, out)
