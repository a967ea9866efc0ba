"""Losses for training retrievers from pseudo-labels: contrastive, margin-MSE and listwise distillation.

Every loss takes score matrices `[B, C]`: row `i` holds the student's (and, for distillation, the
teacher's) scores of query `i` against its `C` candidates, the positive in column 0 unless said
otherwise. Scores are whatever the model ranks by (dot products, cosines times a scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lens_rag.errors import ConfigurationError

__all__ = [
    "flops_regularizer",
    "info_nce_loss",
    "listwise_kl_loss",
    "margin_mse_loss",
]


def _check_2d(name: str, scores: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ConfigurationError(
            f"{name} must be a [batch, candidates] matrix with at least 2 candidates, got shape {tuple(scores.shape)}"
        )


def info_nce_loss(scores: torch.Tensor, temperature: float = 0.05, positive: int = 0) -> torch.Tensor:
    """InfoNCE: cross-entropy of the positive among the candidates, `softmax(scores / temperature)`.

    :param scores: `[B, C]` student scores; hard negatives and in-batch negatives are just more columns.
    :param temperature: softmax temperature (LENS uses 0.02 on L2-normalised vectors; 0.05 is the common
        choice for cosine students).
    :param positive: column of the positive (the same for every row), or use `torch.arange(B)` labels
        yourself for in-batch layouts.
    :returns: the mean loss, a scalar.
    """
    _check_2d("scores", scores)
    if temperature <= 0:
        raise ConfigurationError(f"temperature must be > 0, got {temperature!r}")
    labels = torch.full((scores.shape[0],), positive, dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, labels)


def margin_mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Margin-MSE (Hofstätter et al. 2020, used by GPL): match `s(q, pos) - s(q, neg)` to the teacher's margin.

    :param student: `[B, C]` student scores, positive in column 0, negatives after it.
    :param teacher: `[B, C]` teacher scores in the same layout, on the scale the student should learn.
    :returns: the mean squared difference of the margins over every (query, negative) pair.
    """
    _check_2d("student", student)
    if teacher.shape != student.shape:
        raise ConfigurationError(
            f"teacher scores have shape {tuple(teacher.shape)} but student scores {tuple(student.shape)}; "
            "pass the same candidates to both"
        )
    s_margin = student[:, :1] - student[:, 1:]
    t_margin = (teacher[:, :1] - teacher[:, 1:]).to(student.dtype)
    return F.mse_loss(s_margin, t_margin)


def listwise_kl_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher ‖ student) between the softmax distributions over each query's candidates.

    Scale-free in the teacher's units through `teacher_temperature`, so it distils rank-like scores
    (e.g. fused hybrid scores) into a dot-product student without matching absolute values.

    :param student: `[B, C]` student scores.
    :param teacher: `[B, C]` teacher scores.
    :param student_temperature: divides the student scores.
    :param teacher_temperature: divides the teacher scores (smaller: sharper targets).
    :param mask: optional `[B, C]` bool, False for padded candidates (ignored on both sides).
    :returns: the mean KL over queries.
    """
    _check_2d("student", student)
    if teacher.shape != student.shape:
        raise ConfigurationError(
            f"teacher scores have shape {tuple(teacher.shape)} but student scores {tuple(student.shape)}; "
            "pass the same candidates to both"
        )
    if student_temperature <= 0 or teacher_temperature <= 0:
        raise ConfigurationError("student_temperature and teacher_temperature must be > 0")
    s = student / student_temperature
    t = teacher.to(student.dtype) / teacher_temperature
    if mask is not None:
        neg = torch.finfo(s.dtype).min
        s = s.masked_fill(~mask, neg)
        t = t.masked_fill(~mask, neg)
    log_p_s = F.log_softmax(s, dim=1)
    p_t = F.softmax(t, dim=1)
    kl = p_t * (torch.log(p_t.clamp_min(1e-12)) - log_p_s)
    if mask is not None:
        kl = kl.masked_fill(~mask, 0.0)
    return kl.sum(dim=1).mean()


def flops_regularizer(weights: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser of SPLADE (Paria et al. 2020): `sum_j (mean_i |w_ij|)^2` over a batch `[B, V]`.

    Pushes rarely useful dimensions to zero, which keeps sparse vectors sparse (and inverted lists short).
    """
    if weights.dim() != 2:
        raise ConfigurationError(f"weights must be [batch, dims], got shape {tuple(weights.shape)}")
    return (weights.abs().mean(dim=0) ** 2).sum()
