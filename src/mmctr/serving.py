"""Online scoring: one request = one user's history and N candidate items.

`score_request` is what serving and the latency benchmark call. Models that define
`forward_request(hist, batch)` get the user side computed once per request; others fall back to a
plain batch of N rows that share the history.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmctr.data.batches import Batch


def request_batch(
    hist: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    likes: np.ndarray | torch.Tensor | None = None,
    views: np.ndarray | torch.Tensor | None = None,
    user_id: int = 0,
) -> Batch:
    """A batch of N rows sharing one history. `hist` is the user's history (most recent last; zeros
    are dropped), `targets` the N candidate item ids, `likes`/`views` their levels."""
    h = torch.as_tensor(np.asarray(hist), dtype=torch.long)
    h = h[h > 0]
    if h.numel() == 0:
        h = torch.zeros(1, dtype=torch.long)
    t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    n = t.shape[0]
    lv = (
        torch.zeros(n, dtype=torch.long)
        if likes is None
        else torch.as_tensor(np.asarray(likes), dtype=torch.long)
    )
    vv = (
        torch.zeros(n, dtype=torch.long)
        if views is None
        else torch.as_tensor(np.asarray(views), dtype=torch.long)
    )
    return Batch(
        user_id=torch.full((n,), user_id, dtype=torch.long),
        hist=h.unsqueeze(0).expand(n, -1),
        item_id=t,
        likes=lv,
        views=vv,
        label=torch.zeros(n),
    )


@torch.inference_mode()
def score_request(model: nn.Module, batch: Batch, bf16: bool = False) -> np.ndarray:
    """Click probabilities for the N candidates of one request."""
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if hasattr(model, "forward_request"):
            logits = model.forward_request(batch)
        else:
            logits = model(batch)
    return torch.sigmoid(logits.float()).numpy()
