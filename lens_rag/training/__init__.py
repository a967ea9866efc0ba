"""Training retrievers on a corpus without labels: pseudo-queries, hard-negative mining, distillation.

- :mod:`lens_rag.training.mining` — positive-aware hard-negative mining (TopK-PercPos).
- :mod:`lens_rag.training.losses` — InfoNCE, margin-MSE, listwise KL and the FLOPS regulariser.

Nothing here is imported by ``import lens_rag``: training pulls in torch and is opt-in.
"""

from __future__ import annotations

from lens_rag.training.losses import flops_regularizer, info_nce_loss, listwise_kl_loss, margin_mse_loss
from lens_rag.training.mining import MinedExample, mine_hard_negatives

__all__ = [
    "MinedExample",
    "flops_regularizer",
    "info_nce_loss",
    "listwise_kl_loss",
    "margin_mse_loss",
    "mine_hard_negatives",
]
