"""Trainable twins of the encoders: the same model, pooling and truncation, with gradients.

- :class:`DenseStudent` — a sentence-transformers model in the plain Transformer → Pooling
  [→ Normalize] layout (all-MiniLM-L6-v2 and most others), run by `transformers` exactly as
  :class:`~lens_rag.encoders.dense.SentenceTransformerDenseEncoder` runs it; saved back in the same
  layout, so the saved directory is a drop-in `--dense-model`.
- :class:`SparseStudent` — a SPLADE-style masked LM (`max over tokens of log(1 + relu(logits))`), as
  :class:`~lens_rag.encoders.mlm.MLMSparseEncoder` computes it.

The sparse student never materialises `[batch, length, vocab]` logits with gradients: the max over
positions is taken without gradients (in vocabulary chunks), then only the winning position of each
*active* term (a positive weight) is recomputed with gradients. That is the exact gradient of
`max`+`relu` — inactive terms and losing positions have zero gradient — at a small fraction of the
memory, which is what makes SPLADE training fit a CPU.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lens_rag.encoders.pooling import library_versions
from lens_rag.errors import ConfigurationError, ModelLoadError
from lens_rag.models import resolve_model

__all__ = ["DenseStudent", "SparseStudent", "max_with_argmax"]

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "lens_rag_training.json"


def _write_provenance(out: Path, provenance: dict[str, Any] | None) -> None:
    record = dict(provenance or {}) | {"library_versions": library_versions()}
    (out / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def _target_dir(out: str | Path, source: Path) -> Path:
    out_dir = Path(out)
    if out_dir.resolve() == source.resolve():
        raise ConfigurationError(f"out={str(out)!r} is the source model's directory; write to a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


class _Student(nn.Module):
    """Queries and documents differ only by their truncation."""

    max_length: int
    query_max_length: int

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        raise NotImplementedError

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode(texts, self.query_max_length)

    def encode_documents(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode(texts, self.max_length)


class DenseStudent(_Student):
    """A trainable sentence-transformers model (plain layout) with the encoder's pooling.

    :param model: `"all-MiniLM-L6-v2"`, or a local directory in the plain sentence-transformers layout.
    :param max_length: document truncation (`None`: the model's `max_seq_length`).
    :param query_max_length: query truncation.
    :raises ModelLoadError: if the model is not a local plain-layout sentence-transformers directory.
    """

    def __init__(self, model: str, max_length: int | None = None, query_max_length: int = 64) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        from lens_rag.encoders.dense import _read_layout

        self.source = model
        self.path = Path(resolve_model(model))
        layout = _read_layout(self.path)
        if layout is None:
            raise ModelLoadError(
                f"model={model!r} is not a local sentence-transformers directory in the Transformer → Pooling "
                "[→ Normalize] layout; adaptation trains that layout only (download the model and pass its folder)"
            )
        self.layout = layout
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModel.from_pretrained(str(self.path))
        limit = min(x for x in (layout.max_seq_length, self.model.config.max_position_embeddings) if x)
        self.max_length = min(max_length or limit, limit)
        self.query_max_length = min(query_max_length, limit)

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """`[N, D]` embeddings (L2-normalised when the model's layout normalises), with gradients."""
        from lens_rag.encoders.dense import _pool

        batch = [t.lower() for t in texts] if self.layout.do_lower_case else list(texts)
        features = self.tokenizer(
            batch, padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt"
        ).to(self.model.device)
        hidden = self.model(**features).last_hidden_state
        pooled = _pool(hidden, features["attention_mask"], self.layout.pooling)
        return nn.functional.normalize(pooled, p=2, dim=1) if self.layout.normalize else pooled

    def save(self, out: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        """Write the model in the source's layout (modules, pooling, tokenizer) with the trained weights."""
        out_dir = _target_dir(out, self.path)
        for item in self.path.iterdir():
            if item.name in {"model.safetensors", "pytorch_model.bin", "README.md"}:
                continue
            target = out_dir / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
        self.model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        _write_provenance(out_dir, provenance)
        return out_dir


def max_with_argmax(
    hidden: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, vocab_chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over unmasked positions of `hidden @ weight.T`, and where it is, without gradients.

    :param hidden: `[B, L, H]`.
    :param weight: `[V, H]`.
    :param mask: `[B, L]` bool, True where a position counts.
    :returns: `([B, V]` max logits, `[B, V]` argmax positions).
    """
    b = hidden.shape[0]
    v = weight.shape[0]
    values = torch.empty((b, v), dtype=hidden.dtype, device=hidden.device)
    positions = torch.empty((b, v), dtype=torch.long, device=hidden.device)
    neg = torch.finfo(hidden.dtype).min
    with torch.no_grad():
        h = hidden.detach()
        for s in range(0, v, vocab_chunk):
            e = min(v, s + vocab_chunk)
            logits = torch.einsum("blh,vh->bvl", h, weight[s:e].detach())
            logits.masked_fill_(~mask[:, None, :], neg)
            values[:, s:e], positions[:, s:e] = logits.max(dim=2)
    return values, positions


class SparseStudent(_Student):
    """A trainable SPLADE-style masked LM: `max over real tokens of log(1 + relu(MLM logits))`.

    :param model: `"splade-tiny"`, a local directory or a Hub name of a masked LM with its head.
    :param max_length: document truncation in tokens.
    :param query_max_length: query truncation.
    :param train_head: also train the vocabulary projection (default: frozen, only the body learns).
    :raises ModelLoadError: if the checkpoint has no trained MLM head.
    """

    def __init__(self, model: str, max_length: int = 256, query_max_length: int = 64, train_head: bool = False) -> None:
        super().__init__()
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.source = model
        self.path = Path(resolve_model(model))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self.mlm = AutoModelForMaskedLM.from_pretrained(str(self.path))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not load masked-LM model={model!r}: {e}") from e
        head = self.mlm.get_output_embeddings()
        if head is None:
            raise ModelLoadError(f"model={model!r} has no MLM head (get_output_embeddings() is None)")
        self.head = head
        # Run the body (and the MLM transform) without the vocabulary projection; it is applied sparsely.
        slots = [(p, n) for p in self.mlm.modules() for n, c in p.named_children() if c is head]
        for parent, name in slots:
            setattr(parent, name, nn.Identity())
        self._head_slots = tuple(slots)
        self.head.weight.requires_grad_(train_head)
        if self.head.bias is not None:
            self.head.bias.requires_grad_(train_head)
        self.max_length = max_length
        self.query_max_length = query_max_length

    @property
    def vocab_size(self) -> int:
        return int(self.head.weight.shape[0])

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """`[N, V]` non-negative weights with gradients (dense tensor; most entries are zero)."""
        features = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.head.weight.device)
        mask = features["attention_mask"].bool()
        hidden = self.mlm(**features).logits  # the identity head: hidden states entering the projection
        weight, bias = self.head.weight, self.head.bias
        values, positions = max_with_argmax(hidden, weight, mask)
        if bias is not None:
            values = values + bias.detach()
        rows, terms = torch.nonzero(values > 0, as_tuple=True)
        picked = hidden[rows, positions[rows, terms]]  # [nnz, H], with gradients
        logits = (picked * weight[terms]).sum(dim=1)
        if bias is not None:
            logits = logits + bias[terms]
        out = torch.zeros(values.shape, dtype=hidden.dtype, device=hidden.device)
        return out.index_put((rows, terms), torch.log1p(torch.relu(logits)))

    def save(self, out: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        """Write a masked-LM checkpoint (head restored) that `MLMSparseEncoder(model=out)` loads."""
        out_dir = _target_dir(out, self.path)
        for parent, name in self._head_slots:
            setattr(parent, name, self.head)
        try:
            self.mlm.save_pretrained(out_dir)
        finally:
            for parent, name in self._head_slots:
                setattr(parent, name, nn.Identity())
        self.tokenizer.save_pretrained(out_dir)
        _write_provenance(out_dir, provenance)
        return out_dir
