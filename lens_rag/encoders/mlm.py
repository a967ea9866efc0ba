"""SPLADE-family lexical encoder: MLM logits → `log(1 + relu)` → max-pool over the real tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lens_rag.encoders.pooling import (
    length_sorted_batches,
    library_versions,
    max_pool_saturated_logits,
    progress_bar,
    resolve_device,
    rows_to_sparse,
    validate_texts,
)
from lens_rag.errors import ConfigurationError, ModelLoadError
from lens_rag.models import DEFAULT_SPARSE_MODEL, resolve_model
from lens_rag.sparse import SparseVector

__all__ = ["CLUSTER_HEAD_FILE", "MLMSparseEncoder", "read_cluster_head_info"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "lens_rag_encoder.json"
# A LENS-style clustered head of an MLM (see lens_rag.training.cluster_head): `weight` [k, hidden], `bias` [k]
# and `token_to_cluster` [vocab]; when present it replaces the vocabulary head, so the vectors have k dimensions.
CLUSTER_HEAD_FILE = "cluster_head.safetensors"


def read_cluster_head_info(model: str) -> dict[str, Any] | None:
    """The `cluster_head` block of a model directory's `lens_rag_encoder.json`, or `None` without a clustered head.

    Reads one small JSON file; a name that is not a local directory (an alias, a Hub name) gives `None`.

    :param model: the model alias, name or path.
    :returns: e.g. `{"n_clusters": 4000, "fingerprint": "…", "trained": True, …}`, or `None`.
    """
    if model == DEFAULT_SPARSE_MODEL:
        return None
    directory = Path(model)
    try:
        if not (directory / CLUSTER_HEAD_FILE).is_file():
            return None
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"fingerprint": None}
    block = config.get("cluster_head") if isinstance(config, dict) else None
    return dict(block) if isinstance(block, dict) else {"fingerprint": None}


def _check_positive(name: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


class MLMSparseEncoder:
    """SPLADE-style sparse encoder over any masked-LM checkpoint.

    The embedding of a text is `max over its tokens of log(1 + relu(MLM logits))` — every real token,
    `[CLS]` and `[SEP]` included, as in SPLADE and `sentence_transformers.SparseEncoder` (the vectors
    match it to 1e-5). Queries and documents are encoded the same way; only their maximum length may
    differ (`query_max_length`). Vectors are not normalised (SPLADE scores by raw dot product).

    Speed (PEERS.md): the max is taken over raw logits, then `log1p(relu)` — equal because the map is
    monotone; only real tokens go through the vocabulary head, in vocabulary chunks, so the
    `[batch, length, vocab]` logits never exist at once; batches are sorted by length.

    Empty or whitespace-only texts raise :class:`ConfigurationError` naming their index: an empty
    passage silently indexed as a zero vector is a bug. Texts longer than the maximum length are
    truncated (keeping the final `[SEP]`) with one warning per call.

    A model directory holding `cluster_head.safetensors` (written by
    :func:`lens_rag.training.cluster_head.train_cluster_head` or `lens-rag build-head --model splade-tiny
    --train`) has a LENS-style clustered head: its `k` rows (and biases) replace the vocabulary head, so the
    vectors have `k` dimensions (indices `0 … k-1`, one per token cluster) and encoding skips most of the
    head's cost. Nothing else changes: the MLM transform layer, pooling and scoring are the same.

    :param model: `"splade-tiny"` (packaged, offline), a local path, or a Hugging Face name of a
        masked-LM checkpoint with its MLM head (or a directory with a clustered head, see above).
    :param max_length: maximum tokens per document, special tokens included.
    :param batch_size: texts per forward pass.
    :param progress: show a progress bar when more than one batch is encoded.
    :param device: torch device; `None` picks CUDA when available.
    :param query_max_length: maximum tokens per query; `None` uses `max_length`.
    :param query_model: a different masked LM for queries only, e.g. a query encoder adapted by
        ``lens-rag adapt`` (:mod:`lens_rag.training.adapt`) against the document vectors `model` wrote.
        Documents are always encoded by `model`, so a store indexed with it stays valid and its recorded
        encoder identity (the document side) is unchanged. `None`: `model`.

    Usage::

        enc = MLMSparseEncoder()  # SPLADE-tiny; nothing is loaded yet
        docs = enc.encode_documents(["Aspirin lowers the risk of heart attack."])
        query = enc.encode_queries(["does aspirin prevent heart attacks"])[0]
        query.dot(docs[0])
    """

    def __init__(
        self,
        model: str = DEFAULT_SPARSE_MODEL,
        max_length: int = 256,
        batch_size: int = 32,
        progress: bool = True,
        device: str | None = None,
        query_max_length: int | None = None,
        query_model: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a model name or path, got {model!r}")
        if query_model is not None and (not isinstance(query_model, str) or not query_model):
            raise ConfigurationError(f"query_model must be a model name or path, or None, got {query_model!r}")
        _check_positive("max_length", max_length)
        _check_positive("batch_size", batch_size)
        _check_positive("query_max_length", query_max_length, allow_none=True)
        if max_length < 3:
            raise ConfigurationError(f"max_length must leave room for special tokens and text (>= 3), got {max_length}")
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.progress = progress
        self.device = device
        self.query_max_length = query_max_length
        self.query_model = query_model
        self._query_encoder: MLMSparseEncoder | None = None
        self.name = Path(model).name if model != DEFAULT_SPARSE_MODEL else DEFAULT_SPARSE_MODEL
        self._model: nn.Module | None = None
        self._tokenizer: Any = None
        self._weight: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None
        self._device: torch.device | None = None

    # ------------------------------------------------------------------ lifecycle
    def warm_up(self) -> None:
        """Load the tokenizer and model once; safe to call repeatedly.

        :raises ModelLoadError: if the checkpoint cannot be loaded or has no MLM head.
        """
        if self._model is not None:
            return
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        path = resolve_model(self.model)
        device = resolve_device(self.device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
        except (OSError, ValueError) as e:
            raise ModelLoadError(
                f"could not load masked-LM model={self.model!r} (resolved to {path!r}): {e}. "
                "Pass a directory or Hub name of a masked-LM checkpoint (e.g. a SPLADE model)"
            ) from e
        head = model.get_output_embeddings()
        # Anything missing outside the backbone is head: transformers would fill it with random weights.
        prefix = f"{model.base_model_prefix}."
        head_missing = [k for k in info.get("missing_keys", []) if not k.startswith(prefix)]
        if head is None or head_missing:
            raise ModelLoadError(
                f"model={self.model!r} has no trained MLM head (missing: {head_missing or 'output embeddings'}); "
                "a lexical encoder needs the masked-LM head — pass a checkpoint saved with it (e.g. *ForMaskedLM)"
            )
        weight = head.weight.detach()
        bias = head.bias.detach() if getattr(head, "bias", None) is not None else None
        clustered = Path(path) / CLUSTER_HEAD_FILE
        if clustered.is_file():
            weight, bias = _load_cluster_head(clustered, int(weight.shape[1]))
        # Replace the vocabulary projection by identity so the model returns the hidden states entering it;
        # the projection is applied, chunked and pooled, by max_pool_saturated_logits.
        for parent in model.modules():
            for child_name, child in parent.named_children():
                if child is head:
                    setattr(parent, child_name, nn.Identity())
        model.eval().to(device)
        self._tokenizer = tokenizer
        self._weight = weight.to(device)
        self._bias = bias.to(device) if bias is not None else None
        self._device = device
        self._model = model
        logger.info("loaded masked-LM encoder %s (vocab %s) on %s", path, weight.shape[0], device)

    @property
    def is_clustered(self) -> bool:
        """Whether the model directory has a clustered (LENS-style) head; reads no weights."""
        return (Path(resolve_model(self.model)) / CLUSTER_HEAD_FILE).is_file()

    def close(self) -> None:
        """Release the model; the next encode loads it again."""
        self._model = self._tokenizer = self._weight = self._bias = None
        self._query_encoder = None

    def _queries(self) -> MLMSparseEncoder:
        """The encoder of the query side: `self`, or the `query_model` twin (checked to share the vocabulary)."""
        if self.query_model is None:
            return self
        if self._query_encoder is None:
            twin = MLMSparseEncoder(
                self.query_model,
                max_length=self.max_length,
                batch_size=self.batch_size,
                progress=self.progress,
                device=self.device,
                query_max_length=self.query_max_length,
            )
            if twin.dimension != self.dimension:
                raise ConfigurationError(
                    f"query_model={self.query_model!r} has {twin.dimension} dimensions but model={self.model!r} has "
                    f"{self.dimension}; a query model must share the document model's vocabulary (or clusters)"
                )
            self._query_encoder = twin
        return self._query_encoder

    # ------------------------------------------------------------------ encoding
    @property
    def dimension(self) -> int:
        """Vocabulary size, or the number of clusters of a clustered head (loads the model)."""
        self.warm_up()
        assert self._weight is not None
        return int(self._weight.shape[0])

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode queries (up to `query_max_length` tokens).

        :raises ConfigurationError: on an empty or non-string text.
        """
        qlen = self.max_length if self.query_max_length is None else self.query_max_length
        return self._queries()._encode(validate_texts(texts), qlen, "queries")

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode documents (up to `max_length` tokens).

        :raises ConfigurationError: on an empty or non-string text.
        """
        return self._encode(validate_texts(texts), self.max_length, "documents")

    def encode_dense(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Full-vocabulary `[n, V]` float32 weights (for tests and analysis).

        :raises ConfigurationError: on an empty or non-string text.
        """
        return self._encode_matrix(validate_texts(texts), self.max_length if max_length is None else max_length, "")

    def _encode(self, texts: list[str], max_length: int, what: str) -> list[SparseVector]:
        if not texts:
            return []
        out: list[SparseVector | None] = [None] * len(texts)
        for idx, mat in self._iter_batches(texts, max_length, what):
            for j, vec in zip(idx.tolist(), rows_to_sparse(mat)):
                out[j] = vec
        return out  # type: ignore[return-value]

    def _encode_matrix(self, texts: list[str], max_length: int, what: str) -> np.ndarray:
        self.warm_up()
        assert self._weight is not None
        result = np.zeros((len(texts), self._weight.shape[0]), dtype=np.float32)
        for idx, mat in self._iter_batches(texts, max_length, what):
            result[idx] = mat
        return result

    def _iter_batches(self, texts: list[str], max_length: int, what: str):
        self.warm_up()
        tok, model = self._tokenizer, self._model
        assert model is not None and self._weight is not None and self._device is not None
        ids = tok(texts, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        lengths = [len(x) for x in ids]
        if any(n >= max_length for n in lengths):
            # Only texts that hit the limit can have been cut: count those that really were.
            full = tok([texts[i] for i, n in enumerate(lengths) if n >= max_length], add_special_tokens=True)
            cut = sum(1 for x in full["input_ids"] if len(x) > max_length)
            if cut:
                logger.warning(
                    "%s of %s %s exceed max_length=%s tokens and were truncated; raise max_length to keep them whole",
                    cut,
                    len(texts),
                    what or "texts",
                    max_length,
                )
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        bar = progress_bar(len(texts), self.progress and len(texts) > self.batch_size, f"encoding {what}".strip())
        try:
            with torch.inference_mode():
                for idx in length_sorted_batches(lengths, self.batch_size):
                    width = max(lengths[i] for i in idx)
                    input_ids = torch.full((idx.size, width), pad_id, dtype=torch.long)
                    mask = torch.zeros((idx.size, width), dtype=torch.long)
                    for r, i in enumerate(idx.tolist()):
                        input_ids[r, : lengths[i]] = torch.tensor(ids[i])
                        mask[r, : lengths[i]] = 1
                    input_ids, mask = input_ids.to(self._device), mask.to(self._device)
                    hidden = model(input_ids=input_ids, attention_mask=mask).logits  # identity head: [B, L, H]
                    pooled = max_pool_saturated_logits(hidden, self._weight, mask.bool(), self._bias)
                    yield idx, pooled.float().cpu().numpy()
                    bar.update(idx.size)
        finally:
            bar.close()

    # ------------------------------------------------------------------ configuration
    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (see :meth:`from_config`).

        A model directory with a clustered head adds `cluster_head_fingerprint` (a hash of its weights,
        written when it was saved): the encoder identity of a store then changes when the directory is
        trained again in place, so vectors of the old weights are never mixed with the new.
        """
        config: dict[str, Any] = {
            "type": "mlm",
            "model": self.model,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "progress": self.progress,
            "device": self.device,
            "query_max_length": self.query_max_length,
            "query_model": self.query_model,
        }
        head = read_cluster_head_info(self.model)
        if head is not None:
            config["cluster_head_fingerprint"] = head.get("fingerprint")
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MLMSparseEncoder:
        """Rebuild from :meth:`to_config` output; missing keys take their defaults.

        `cluster_head_fingerprint` describes the model directory, not an argument: it is not passed on
        (the store's identity check compares it with the directory's current one).
        """
        kwargs = {k: v for k, v in config.items() if k not in ("type", "cluster_head_fingerprint")}
        return cls(**kwargs)

    def save(self, directory: str | Path) -> Path:
        """Write the model, tokenizer and `lens_rag_encoder.json` (configuration, pooling, library versions).

        The saved directory loads back with `MLMSparseEncoder(model=str(directory))`.

        :returns: the directory.
        """
        from transformers import AutoModelForMaskedLM

        self.warm_up()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        # The loaded model had its head swapped for identity: reload the checkpoint intact to save it.
        source = Path(resolve_model(self.model))
        AutoModelForMaskedLM.from_pretrained(str(source)).save_pretrained(out)
        self._tokenizer.save_pretrained(out)
        config = self.to_config() | {"model": str(out), "source_model": self.model}
        if (source / CLUSTER_HEAD_FILE).is_file():
            import shutil

            if (source / CLUSTER_HEAD_FILE).resolve() != (out / CLUSTER_HEAD_FILE).resolve():
                shutil.copyfile(source / CLUSTER_HEAD_FILE, out / CLUSTER_HEAD_FILE)
            config.pop("cluster_head_fingerprint", None)
            config["cluster_head"] = read_cluster_head_info(str(source))
        config["pooling"] = "max over real tokens of log(1 + relu(mlm_logits)); no normalisation"
        config["library_versions"] = library_versions()
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return out


def _load_cluster_head(path: Path, hidden: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`weight` [k, hidden] and `bias` [k] (or `None`) of a clustered head file, checked against the model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ModelLoadError(f"could not read the clustered head {str(path)!r}: {e}") from e
    weight = tensors.get("weight")
    if weight is None or weight.dim() != 2 or int(weight.shape[1]) != hidden:
        shape = None if weight is None else tuple(weight.shape)
        raise ModelLoadError(
            f"the clustered head {str(path)!r} must hold `weight` of shape [k, {hidden}] (the model's hidden size), "
            f"got {shape}; rebuild it from this model with `lens-rag build-head`"
        )
    bias = tensors.get("bias")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ModelLoadError(
            f"the clustered head {str(path)!r} has `bias` of shape {tuple(bias.shape)}, expected ({weight.shape[0]},)"
        )
    return weight.float(), None if bias is None else bias.float()
