"""The trained Track-1 retriever: two towers over frozen encoders, one model for both sub-tasks.

Query tower: the question's MiniLM vector through a low-rank residual projection, the query
photo's EfficientNet vector through the image projection, the question's terms (BM25's query
side), and field weights w(q) computed from the question vector and three flags (M2KR or
MMDocIR, has a question, has a photo).
Candidate tower: the page's VLM and OCR text vectors (MMDocIR) or the passage's text vector
(M2KR) through the document projection, their BM25 term weights, and the screenshot's region
(window) vectors through the same image projection as the photo.

score(q, c) = sum over fields f of w_f(q) * s_f(q, c): s_f is an inner product of the two towers'
vectors for that field (cosine for the dense texts, BM25 as the sparse inner product, MaxSim over
the screenshot's windows for the image), so a candidate's vectors are computed once at index time
and a query costs one pass of its tower plus the inner products.

The projections start as the identity (their residual starts at zero) and the field weights at
fixed priors, so an untrained model is the plain sum of dense, BM25 and image scores; training
moves them with InfoNCE over the gold against hard negatives (see train.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mmctr.retrieval.trained.features import DOC_FIELDS, FIELDS, PASSAGE_FIELDS


@dataclass
class TwoTowerConfig:
    text_dim: int = 384
    image_dim: int = 1280
    text_rank: int = 32  # rank of the text projections' residual
    image_rank: int = 64
    prior_dense: float = 1.0  # field weights before training
    prior_sparse: float = 1.0
    prior_image: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


class LowRankResidual(nn.Module):
    """x -> normalise(x + x V U): the identity at start (U = 0), a rank-r change after training."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.normal_(self.down.weight, std=dim**-0.5)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        return F.normalize(x + self.up(self.down(x)), dim=-1)


def _inverse_softplus(y: float) -> float:
    return float(torch.log(torch.expm1(torch.tensor(y))))


class TwoTower(nn.Module):
    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        self.config = config
        self.query_text = LowRankResidual(config.text_dim, config.text_rank)
        self.doc_text = LowRankResidual(config.text_dim, config.text_rank)
        self.image = LowRankResidual(config.image_dim, config.image_rank)
        self.gate = nn.Linear(config.text_dim + 3, len(FIELDS))
        nn.init.zeros_(self.gate.weight)
        prior = {"dense": config.prior_dense, "sparse": config.prior_sparse, "image": config.prior_image}
        with torch.no_grad():
            self.gate.bias.copy_(torch.tensor([_inverse_softplus(prior[f.split("_")[0]]) for f in FIELDS]))
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(20.0)))))

    def field_weights(self, q_text: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """(B, Dt), (B, 3) -> (B, F) non-negative weight of each field for each query."""
        return F.softplus(self.gate(torch.cat([q_text, flags], dim=-1)))

    # -- MMDocIR ------------------------------------------------------------------------------------

    def doc_scores(
        self,
        q: torch.Tensor,  # (Dt,) projected question
        w: torch.Tensor,  # (F,) field weights of the question
        vlm: torch.Tensor,  # (n, Dt) projected page texts
        ocr: torch.Tensor,  # (n, Dt)
        s_vlm: torch.Tensor,  # (n,) BM25 (scaled)
        s_ocr: torch.Tensor,  # (n,)
    ) -> torch.Tensor:  # (n,)
        i = {f: FIELDS.index(f) for f in DOC_FIELDS}
        return (
            w[i["dense_vlm"]] * (vlm @ q)
            + w[i["dense_ocr"]] * (ocr @ q)
            + w[i["sparse_vlm"]] * s_vlm
            + w[i["sparse_ocr"]] * s_ocr
        )

    # -- M2KR ---------------------------------------------------------------------------------------

    def passage_scores(
        self,
        q: torch.Tensor,  # (Dt,) projected query text
        photo: torch.Tensor | None,  # (Di,) projected photo, None without one
        w: torch.Tensor,  # (F,)
        texts: torch.Tensor,  # (n, Dt) projected passage texts
        sparse: torch.Tensor,  # (n,) BM25 (scaled)
        windows: torch.Tensor | None,  # (m, Di) projected windows of the n passages
        segment: torch.Tensor | None,  # (m,) 0..n-1: the passage of each window
    ) -> torch.Tensor:  # (n,)
        i = {f: FIELDS.index(f) for f in PASSAGE_FIELDS}
        s = w[i["dense_passage"]] * (texts @ q) + w[i["sparse_passage"]] * sparse
        if photo is not None and windows is not None and len(windows):
            sims = windows @ photo  # (m,)
            best = torch.full((texts.shape[0],), -1.0, dtype=sims.dtype).scatter_reduce(
                0, segment, sims, reduce="amax", include_self=False
            )  # (n,) MaxSim; -1 for a passage without windows
            s = s + w[i["image"]] * best
        return s
