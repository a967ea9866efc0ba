"""Dense encoder: sentence-transformers models with query and document prompts.

A model saved in the common sentence-transformers layout — `modules.json` listing a Transformer, a
Pooling (mean, CLS, max or mean-sqrt-len) and optionally a Normalize module — runs through
`transformers` directly: the same weights, tokenizer, truncation and pooling, so the vectors equal
sentence-transformers' to float rounding, without importing sentence-transformers (about 5 s of
imports against about 2 s for torch and transformers). Any other layout (extra Dense layers,
routers, default prompts, Hub names not downloaded yet) is loaded by sentence-transformers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lens_rag.encoders.pooling import validate_texts
from lens_rag.errors import ConfigurationError, ModelLoadError
from lens_rag.models import DEFAULT_DENSE_MODEL, resolve_model

__all__ = ["SentenceTransformerDenseEncoder"]

logger = logging.getLogger(__name__)


class SentenceTransformerDenseEncoder:
    """Dense embeddings from any sentence-transformers model.

    Prompts are prepended as text (`query_prompt + query`), which works for every model; e5-style
    models want e.g. `query_prompt="query: "`, `document_prompt="passage: "`. Inputs are sorted by
    length for batching and truncated at the model's `max_seq_length` (a warning says how many were).
    Models in the plain sentence-transformers layout run through `transformers` directly (see the
    module docstring; :attr:`backend` says which ran); others through sentence-transformers.

    :param model: `"all-MiniLM-L6-v2"` (packaged, offline), a local path or a Hub name.
    :param query_prompt: text prepended to every query (`None`: none).
    :param document_prompt: text prepended to every document (`None`: none).
    :param batch_size: texts per forward pass.
    :param normalize: L2-normalise the embeddings (dot product = cosine).
    :param progress: show a progress bar for more than one batch.
    :param device: torch device; `None` lets sentence-transformers choose.
    :param query_model: a different model for queries only, e.g. a query encoder adapted by
        ``lens-rag adapt`` (:mod:`lens_rag.training.adapt`) against the document vectors `model` wrote.
        Documents are always encoded by `model`, so a store indexed with `model` stays valid and its
        recorded encoder identity (which describes the document side) is unchanged. `None`: `model`.

    Usage::

        enc = SentenceTransformerDenseEncoder()
        docs = enc.encode_documents_array(["Scurvy is caused by a lack of vitamin C."])  # (1, 384) float32
    """

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        progress: bool = True,
        device: str | None = None,
        query_model: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a model name or path, got {model!r}")
        if query_model is not None and (not isinstance(query_model, str) or not query_model):
            raise ConfigurationError(f"query_model must be a model name or path, or None, got {query_model!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        for name, p in (("query_prompt", query_prompt), ("document_prompt", document_prompt)):
            if p is not None and not isinstance(p, str):
                raise ConfigurationError(f"{name} must be a string or None, got {type(p).__name__}")
        self.model = model
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.batch_size = batch_size
        self.normalize = normalize
        self.progress = progress
        self.device = device
        self.name = Path(model.rstrip("/")).name
        self.query_model = query_model
        self._model: Any = None
        self._query_encoder: SentenceTransformerDenseEncoder | None = None

    def warm_up(self) -> None:
        """Load the model once; safe to call repeatedly.

        :raises ModelLoadError: if the model cannot be loaded.
        """
        if self._model is not None:
            return
        path = resolve_model(self.model)
        if not Path(path).is_dir():
            path = _cached_snapshot(path) or path
        layout = _read_layout(Path(path))
        if layout is not None:
            try:
                self._model = _TransformersBackend(Path(path), layout, self.device)
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"could not load dense model={self.model!r} ({path}): {e}") from e
        else:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(path, device=self.device)
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"could not load sentence-transformers model={self.model!r} ({path}): {e}") from e
        logger.info("loaded dense encoder %s (%s d) with %s", path, self.dimension, self.backend)

    @property
    def backend(self) -> str | None:
        """``"transformers"`` or ``"sentence-transformers"``: what runs the loaded model (`None` before loading)."""
        if self._model is None:
            return None
        return "transformers" if isinstance(self._model, _TransformersBackend) else "sentence-transformers"

    def close(self) -> None:
        """Release the model (and the query model)."""
        self._model = None
        self._query_encoder = None

    def _queries(self) -> SentenceTransformerDenseEncoder:
        """The encoder of the query side: `self`, or the `query_model` twin (checked to share the dimension)."""
        if self.query_model is None:
            return self
        if self._query_encoder is None:
            twin = SentenceTransformerDenseEncoder(
                self.query_model,
                query_prompt=self.query_prompt,
                batch_size=self.batch_size,
                normalize=self.normalize,
                progress=self.progress,
                device=self.device,
            )
            if twin.dimension != self.dimension:
                raise ConfigurationError(
                    f"query_model={self.query_model!r} embeds in {twin.dimension} dimensions but model={self.model!r} "
                    f"in {self.dimension}; a query model must match the document model's vectors"
                )
            self._query_encoder = twin
        return self._query_encoder

    @property
    def dimension(self) -> int:
        """Embedding size (loads the model)."""
        self.warm_up()
        get = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get())

    def _encode(self, texts: Sequence[str], prompt: str | None) -> np.ndarray:
        texts = validate_texts(texts)
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if prompt is not None:
            texts = [prompt + t for t in texts]
        emb = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            show_progress_bar=self.progress and len(texts) > self.batch_size,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)

    def encode_queries_array(self, texts: Sequence[str]) -> np.ndarray:
        """`[n, dimension]` float32 query embeddings.

        :raises ConfigurationError: on an empty or non-string text.
        """
        return self._queries()._encode(texts, self.query_prompt)

    def encode_documents_array(self, texts: Sequence[str]) -> np.ndarray:
        """`[n, dimension]` float32 document embeddings.

        :raises ConfigurationError: on an empty or non-string text.
        """
        return self._encode(texts, self.document_prompt)

    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """Query embeddings as lists of floats."""
        return self.encode_queries_array(texts).tolist()

    def encode_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Document embeddings as lists of floats."""
        return self.encode_documents_array(texts).tolist()

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (see :meth:`from_config`)."""
        return {
            "type": "sentence-transformers",
            "model": self.model,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "batch_size": self.batch_size,
            "normalize": self.normalize,
            "progress": self.progress,
            "device": self.device,
            "query_model": self.query_model,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SentenceTransformerDenseEncoder:
        """Rebuild from :meth:`to_config` output; missing keys take their defaults."""
        return cls(**{k: v for k, v in config.items() if k != "type"})


# ------------------------------------------------------------------ sentence-transformers layout, run by transformers
_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
_POOLING_NAMES = {"mean", "cls", "max", "mean_sqrt_len"}
# sentence_bert_config.json keys that change nothing when empty
_NEUTRAL_KEYS = {"model_args", "tokenizer_args", "config_args", "processor_kwargs", "model_kwargs", "config_kwargs"}


_CHARS_PER_TOKEN = 100


@dataclass(frozen=True)
class _Layout:
    pooling: str
    max_seq_length: int | None
    do_lower_case: bool
    normalize: bool


def _cached_snapshot(name: str) -> str | None:
    """The local folder of a Hub model already in the Hugging Face cache, else `None` (nothing is downloaded)."""
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # not a Hub name, or not cached: sentence-transformers resolves (and downloads) it
        return None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_layout(path: Path) -> _Layout | None:
    """The Transformer → Pooling [→ Normalize] layout of a local sentence-transformers model, else `None`."""
    try:
        if not (path / "modules.json").is_file():
            return None
        modules = _read_json(path / "modules.json")
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
            return None
        if modules[0].get("path", "") not in ("", "."):
            return None
        pooling_config = _read_json(path / modules[1]["path"] / "config.json")
        modes = {_POOLING_KEYS[k] for k, v in pooling_config.items() if k in _POOLING_KEYS and v}
        unknown = [
            k for k, v in pooling_config.items() if k.startswith("pooling_mode_") and v and k not in _POOLING_KEYS
        ]
        if isinstance(pooling_config.get("pooling_mode"), str):  # newer configs name the mode
            modes = {pooling_config["pooling_mode"].removesuffix("_tokens").removesuffix("_token")}
        if len(modes) != 1 or unknown or not modes <= _POOLING_NAMES:
            return None
        sbert_file = path / "sentence_bert_config.json"
        sbert = _read_json(sbert_file) if sbert_file.is_file() else {}
        if any(v for k, v in sbert.items() if k not in {"max_seq_length", "do_lower_case"} | _NEUTRAL_KEYS) or any(
            sbert.get(k) for k in _NEUTRAL_KEYS
        ):
            return None
        st_config_file = path / "config_sentence_transformers.json"
        st_config = _read_json(st_config_file) if st_config_file.is_file() else {}
        if st_config.get("default_prompt_name") or st_config.get("prompts") not in (
            None,
            {},
            {"query": "", "document": ""},
        ):
            return None  # sentence-transformers would add a prompt of its own
        max_len = sbert.get("max_seq_length")
        return _Layout(
            pooling=next(iter(modes)),
            max_seq_length=int(max_len) if max_len else None,
            do_lower_case=bool(sbert.get("do_lower_case", False)),
            normalize=kinds[2:] == ["Normalize"],
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        logger.debug("not a plain sentence-transformers layout at %s (%s); using sentence-transformers", path, e)
        return None


class _TransformersBackend:
    """A sentence-transformers Transformer → Pooling [→ Normalize] model run by `transformers` (the subset of
    `SentenceTransformer.encode` the encoder uses)."""

    def __init__(self, path: Path, layout: _Layout, device: str | None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.layout = layout
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).to(self.device).eval()
        limits = [layout.max_seq_length, getattr(self.model.config, "max_position_embeddings", None)]
        if layout.max_seq_length is None and self.tokenizer.model_max_length < 1_000_000:
            limits.append(self.tokenizer.model_max_length)
        self.max_seq_length = min(int(x) for x in limits if x)
        self.dimension = int(self.model.config.hidden_size)

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    def encode(
        self,
        texts: list[str],
        *,
        batch_size: int,
        normalize_embeddings: bool,
        show_progress_bar: bool,
        convert_to_numpy: bool = True,
    ) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        # A 5 MB text would take seconds to tokenize only to be truncated: keep 100 characters per token of the
        # window (BERT's longest word piece is 100 characters), which changes no result but for pathological input.
        limit = self.max_seq_length * _CHARS_PER_TOKEN
        texts = [t[:limit] for t in texts]
        if self.layout.do_lower_case:
            texts = [t.lower() for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")  # as sentence-transformers batches
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        truncated = 0
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="Batches", disable=not show_progress_bar):
                index = order[start : start + batch_size]
                batch = [texts[i] for i in index]
                features = self.tokenizer(
                    batch,
                    padding=True,
                    truncation="longest_first",
                    max_length=self.max_seq_length,
                    return_tensors="pt",
                    return_offsets_mapping=bool(getattr(self.tokenizer, "is_fast", False)),
                )
                offsets = features.pop("offset_mapping", None)
                features = features.to(self.device)
                mask = features["attention_mask"]
                truncated += _count_truncated(batch, mask, offsets, self.max_seq_length)
                hidden = self.model(**features).last_hidden_state
                pooled = _pool(hidden, mask, self.layout.pooling)
                if self.layout.normalize or normalize_embeddings:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[index] = pooled.float().cpu().numpy()
        if truncated:
            logger.warning(
                "%s of %s texts exceed max_seq_length=%s tokens and were truncated (their tail is not embedded); "
                "chunk long texts (lens_rag.chunking) to keep them whole",
                truncated,
                len(texts),
                self.max_seq_length,
            )
        return out


def _count_truncated(texts: list[str], mask: Any, offsets: Any, max_length: int) -> int:
    """How many texts lost tokens to truncation: full rows whose last token ends before the text's last word."""
    full = (mask.sum(dim=1) >= max_length).nonzero().flatten().tolist()
    if offsets is None:
        return len(full)  # no offsets (slow tokenizer): a full window counts as truncated
    return sum(1 for row in full if texts[row][int(offsets[row, :, 1].max()) :].strip())


def _pool(hidden: Any, mask: Any, mode: str) -> Any:
    """sentence-transformers' Pooling for one mode."""
    import torch

    if mode == "cls":
        return hidden[:, 0]
    expanded = mask.unsqueeze(-1).expand(hidden.size()).to(hidden.dtype)
    if mode == "max":
        masked = hidden.masked_fill(expanded == 0, torch.finfo(hidden.dtype).min)
        return masked.max(dim=1).values
    summed = (hidden * expanded).sum(dim=1)
    counts = torch.clamp(expanded.sum(dim=1), min=1e-9)
    return summed / (torch.sqrt(counts) if mode == "mean_sqrt_len" else counts)
