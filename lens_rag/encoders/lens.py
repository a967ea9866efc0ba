"""LENS: lexicon embeddings from a causal LLM with bidirectional attention and a clustered LM head.

See METHODS.md (LENS section). A LENS model directory holds a decoder backbone (`MistralModel`,
`LlamaModel`, … loadable by `AutoModel`), its tokenizer, and the `k × hidden` centroid head in one of:

- `lens_head.safetensors` (key `weight`, optional `token_to_cluster`) — written by lens-rag;
- `lm_head.pth` — the released `yibinlei/LENS-d4000`/`-d8000` layout. It is read with
  `torch.load(weights_only=True)`; the only class allowed beyond tensors is `torch.nn.Linear`
  (the released file pickles one), whose unpickling runs no user code. The head is then converted to
  `lens_head.safetensors` once, next to it, and the `.pth` is never read again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lens_rag.encoders.pooling import (
    length_sorted_batches,
    max_pool_saturated_logits,
    progress_bar,
    resolve_device,
    resolve_dtype,
    rows_to_sparse,
    validate_texts,
)
from lens_rag.errors import ConfigurationError, ModelLoadError
from lens_rag.sparse import SparseVector

__all__ = [
    "DEFAULT_INSTRUCTION",
    "HEAD_FILE",
    "LENS_CONFIG_FILE",
    "MARKER_TOKENS",
    "RELEASED_HEAD_FILE",
    "LENSEncoder",
    "load_lens_head",
    "make_bidirectional",
    "padding_only_mask",
]

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "Given a query, retrieve relevant passages that answer the query."
HEAD_FILE = "lens_head.safetensors"
RELEASED_HEAD_FILE = "lm_head.pth"
LENS_CONFIG_FILE = "lens_config.json"
# Added tokens of the released tokenizer (vocab 32,003); the head builder adds the same ones.
MARKER_TOKENS = ("<instruct>", "<query>", "<response>")
QUERY_PREFIX = "<instruct>{instruction}\n<query>"


# ---------------------------------------------------------------------------- head loading
def _tensor_from_pth(path: Path) -> torch.Tensor:
    try:
        with torch.serialization.safe_globals([nn.Linear]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError/RuntimeError variants
        raise ModelLoadError(
            f"{path} could not be read safely ({type(e).__name__}: {str(e)[:200]}). lens-rag only reads tensors, "
            "a state dict or a pickled torch.nn.Linear from lm_head.pth and never unpickles arbitrary code. "
            "Convert it yourself in a trusted session: "
            "`safetensors.torch.save_file({'weight': head_weight.contiguous()}, 'lens_head.safetensors')`"
        ) from e
    if isinstance(obj, nn.Linear):
        return obj.weight.detach()
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and v.dim() == 2}
        for key in ("weight", "lm_head.weight"):
            if key in tensors:
                return tensors[key].detach()
        if len(tensors) == 1:
            return next(iter(tensors.values())).detach()
        raise ModelLoadError(f"{path} holds a dict without a 2-D 'weight' tensor (keys: {sorted(obj)[:10]})")
    raise ModelLoadError(f"{path} holds a {type(obj).__name__}, expected a tensor, state dict or nn.Linear")


def load_lens_head(directory: str | Path, convert: bool = True) -> torch.Tensor:
    """The `k × hidden` centroid head of a LENS model directory, as float32.

    :param directory: a lens-rag LENS directory or a released LENS checkpoint directory.
    :param convert: write `lens_head.safetensors` next to a released `lm_head.pth` (once).
    :returns: the head weight.
    :raises ModelLoadError: if no head file exists or it cannot be read safely.
    """
    from safetensors.torch import load_file, save_file

    d = Path(directory)
    st, pth = d / HEAD_FILE, d / RELEASED_HEAD_FILE
    if st.is_file():
        tensors = load_file(str(st))
        if "weight" not in tensors:
            raise ModelLoadError(f"{st} has no 'weight' tensor (keys: {sorted(tensors)}); rebuild the head")
        return tensors["weight"].float()
    if pth.is_file():
        weight = _tensor_from_pth(pth).float().contiguous()
        if weight.dim() != 2:
            raise ModelLoadError(f"{pth} holds a {tuple(weight.shape)} tensor; a LENS head is 2-D (clusters × hidden)")
        if convert:
            try:
                save_file({"weight": weight}, str(st), metadata={"converted_from": RELEASED_HEAD_FILE})
                logger.info("converted %s to %s; the pickle will not be read again", pth, st)
            except OSError as e:
                logger.warning("could not write %s (%s); the head is converted in memory on every load", st, e)
        return weight
    raise ModelLoadError(
        f"{d} has no LENS head: expected {HEAD_FILE} (lens-rag layout) or {RELEASED_HEAD_FILE} (released "
        "yibinlei/LENS-d* layout). A plain causal LM is not a LENS model: build a clustered head with "
        "`lens-rag build-head --model PATH --clusters 4000 --out DIR` (then fine-tune it)"
    )


# ---------------------------------------------------------------------------- bidirectional attention
def make_bidirectional(model: nn.Module) -> int:
    """Make every attention module of a decoder non-causal.

    Two independent switches, so neither a mask-building path nor an attention kernel can fall back to
    causal attention (the failure of the authors' transformers-4.43 patch on transformers ≥ 4.53):

    - `config.is_causal = False`: transformers 5's `create_causal_mask` then builds a bidirectional mask;
    - `module.is_causal = False` on every attention module: SDPA/flash kernels read this flag when no
      mask is passed.

    :class:`LENSEncoder` additionally passes an explicit 4-D padding-only mask, which transformers
    uses as-is. A unit test proves bidirectionality under eager and SDPA attention.

    :param model: a transformers decoder (backbone or causal LM).
    :returns: how many attention modules were switched.
    :raises ModelLoadError: if no module carries an `is_causal` flag (unknown architecture).
    """
    config = getattr(model, "config", None)
    if config is not None:
        config.is_causal = False
        for sub in ("text_config",):
            if hasattr(config, sub):
                getattr(config, sub).is_causal = False
    n = 0
    for module in model.modules():
        if hasattr(module, "is_causal") and isinstance(module.is_causal, bool):
            module.is_causal = False
            n += 1
    if n == 0:
        raise ModelLoadError(
            f"{type(model).__name__} has no attention module with an `is_causal` flag; lens-rag cannot make it "
            "bidirectional safely. Use a Llama/Mistral/Qwen-style decoder"
        )
    return n


def padding_only_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A `[B, 1, L, L]` additive mask hiding padded keys only (no causal triangle).

    :param attention_mask: `[B, L]` with 1 for real tokens.
    :param dtype: the model's compute dtype.
    """
    keep = attention_mask[:, None, None, :].to(torch.bool)
    mask = torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device)
    mask = mask.masked_fill(~keep, torch.finfo(dtype).min)
    return mask.expand(-1, 1, attention_mask.shape[1], -1)


# ---------------------------------------------------------------------------- encoder
@dataclass
class _Encoded:
    ids: list[int]
    pool_start: int  # first pooled position in the unpadded sequence
    pool_end: int  # one past the last pooled position


class LENSEncoder:
    """LENS sparse encoder (arXiv 2501.09749) over a causal-LM backbone with a clustered head.

    Encoding, exactly as the released models (METHODS.md):

    - queries: `"<instruct>{instruction}\\n<query>{query}"`; documents: the text alone;
    - `BOS … EOS` (EOS appended; BOS when the tokenizer has one), left padding, `max_length` tokens;
    - bidirectional attention (padding-only mask), positions numbered from each text's first real token;
    - logits = hidden @ centroids.T (`k` dims), weights `log(1 + relu(logits))`, max-pooled over
      **queries**: from the `<query>` token up to, but excluding, the last content token and EOS;
      **documents**: every position except the last two (the last content token and EOS), BOS included
      (each output predicts the next token). A one-token document without BOS pools its only content
      position;
    - L2 normalisation, score by dot product.

    Too-long inputs are truncated at the end of their content (EOS kept), with a warning.
    Empty or blank texts raise :class:`ConfigurationError`.

    :param model: a LENS model directory (lens-rag layout, or released `yibinlei/LENS-d*` layout) or a
        Hub name of one (downloaded when online).
    :param instruction: task instruction for queries.
    :param max_length: maximum tokens per input, BOS/EOS included.
    :param batch_size: texts per forward pass.
    :param dtype: `"float32"`, `"float16"`, `"bfloat16"`; `None` = float16 on CUDA, float32 on CPU.
    :param progress: show a progress bar when more than one batch is encoded.
    :param device: torch device; `None` picks CUDA when available.
    :param attn_implementation: transformers attention backend (`"sdpa"`, `"eager"`); `None` = default.

    Usage::

        enc = LENSEncoder("/models/LENS-d4000")
        q = enc.encode_queries(["what causes scurvy"])[0]
        d = enc.encode_documents(["Scurvy is caused by a lack of vitamin C."])[0]
        q.dot(d)
    """

    def __init__(
        self,
        model: str,
        instruction: str = DEFAULT_INSTRUCTION,
        max_length: int = 512,
        batch_size: int = 8,
        dtype: str | None = None,
        progress: bool = True,
        device: str | None = None,
        attn_implementation: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a LENS model directory or name, got {model!r}")
        if not isinstance(instruction, str):
            raise ConfigurationError(f"instruction must be a string, got {type(instruction).__name__}")
        for name, value, low in (("max_length", max_length, 4), ("batch_size", batch_size, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
        if dtype is not None and dtype not in ("float32", "float16", "bfloat16"):
            raise ConfigurationError(f"dtype={dtype!r} is not supported; use float32, float16, bfloat16 or None")
        self.model = model
        self.instruction = instruction
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = dtype
        self.progress = progress
        self.device = device
        self.attn_implementation = attn_implementation
        self.name = Path(model.rstrip("/")).name
        self._model: nn.Module | None = None
        self._tokenizer: Any = None
        self._head: torch.Tensor | None = None
        self._device: torch.device | None = None
        self._dtype: torch.dtype | None = None
        self._dir: Path | None = None

    @classmethod
    def load(cls, directory: str | Path, **overrides: Any) -> LENSEncoder:
        """Construct from a directory, taking instruction and max length from its `lens_config.json`.

        :param overrides: constructor arguments that win over the saved ones.
        """
        saved: dict[str, Any] = {}
        cfg = Path(directory) / LENS_CONFIG_FILE
        if cfg.is_file():
            saved = json.loads(cfg.read_text(encoding="utf-8")).get("encoder", {})
        kwargs = {k: saved[k] for k in ("instruction", "max_length") if k in saved} | overrides
        return cls(model=str(directory), **kwargs)

    # ------------------------------------------------------------------ lifecycle
    def warm_up(self) -> None:
        """Load tokenizer, backbone and head once, and switch attention to bidirectional.

        :raises ModelLoadError: if the directory lacks a head, a backbone or a tokenizer with EOS.
        """
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        directory = Path(self.model)
        if not directory.is_dir():
            try:
                from huggingface_hub import snapshot_download

                directory = Path(snapshot_download(self.model))
            except Exception as e:
                raise ModelLoadError(
                    f"model={self.model!r} is not a local directory and could not be downloaded ({e}); "
                    "pass the path of a LENS model directory"
                ) from e
        head = load_lens_head(directory)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
            backbone = AutoModel.from_pretrained(directory, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not load the LENS backbone/tokenizer from {directory}: {e}") from e
        if tokenizer.eos_token_id is None:
            raise ModelLoadError(f"the tokenizer in {directory} has no EOS token; LENS appends EOS to every input")
        hidden = getattr(backbone.config, "hidden_size", None)
        if hidden is not None and head.shape[1] != hidden:
            raise ModelLoadError(
                f"head in {directory} is {tuple(head.shape)} but the backbone's hidden size is {hidden}; "
                "the head was built for another model"
            )
        n = make_bidirectional(backbone)
        backbone.eval().to(device)
        logger.info(
            "loaded LENS model %s: %s clusters, %s bidirectional attention modules", directory, head.shape[0], n
        )
        self._tokenizer = tokenizer
        self._head = head.to(device=device, dtype=dtype)
        self._device, self._dtype, self._dir = device, dtype, directory
        self._model = backbone

    def close(self) -> None:
        """Release model, tokenizer and head."""
        self._model = self._tokenizer = self._head = None

    @property
    def dimension(self) -> int:
        """Number of clusters `k` (loads the model)."""
        self.warm_up()
        assert self._head is not None
        return int(self._head.shape[0])

    # ------------------------------------------------------------------ tokenisation
    def _specials(self) -> tuple[list[int], int]:
        tok = self._tokenizer
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        return bos, int(tok.eos_token_id)

    def _tokenize_documents(self, texts: list[str]) -> tuple[list[_Encoded], int]:
        bos, eos = self._specials()
        room = self.max_length - len(bos) - 1
        content = self._tokenizer(texts, add_special_tokens=False)["input_ids"]
        out, cut = [], 0
        for ids in content:
            if len(ids) > room:
                ids, cut = ids[:room], cut + 1
            seq = [*bos, *ids, eos]
            end = max(len(seq) - 2, 1)  # all but the last content token and EOS; never empty
            out.append(_Encoded(seq, 0, end))
        return out, cut

    def _tokenize_queries(self, texts: list[str]) -> tuple[list[_Encoded], int]:
        bos, eos = self._specials()
        prefix = QUERY_PREFIX.format(instruction=self.instruction)
        full = [prefix + t for t in texts]
        enc = self._tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        room = self.max_length - len(bos) - 1
        out, cut = [], 0
        for i, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
            # The token covering the prefix's last character is `<query>` (or its final piece when the
            # tokenizer lacks the marker token): pooling starts at its output.
            start = max(j for j, (s, _) in enumerate(offsets) if s < len(prefix))
            if start + 1 >= room or start + 1 >= len(ids):
                raise ConfigurationError(
                    f"query {i} leaves no room for its text: the instruction alone takes {start + 1} tokens "
                    f"of max_length={self.max_length}; shorten the instruction or raise max_length"
                )
            if len(ids) > room:
                ids, cut = ids[:room], cut + 1
            seq = [*bos, *ids, eos]
            out.append(_Encoded(seq, len(bos) + start, len(seq) - 2))
        return out, cut

    # ------------------------------------------------------------------ encoding
    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode queries with the instruction template.

        :raises ConfigurationError: on an empty text or an instruction that fills `max_length`.
        """
        texts = validate_texts(texts)
        if not texts:
            return []
        self.warm_up()
        encoded, cut = self._tokenize_queries(texts)
        return self._run(encoded, cut, "queries")

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode documents (no instruction).

        :raises ConfigurationError: on an empty text.
        """
        texts = validate_texts(texts)
        if not texts:
            return []
        self.warm_up()
        encoded, cut = self._tokenize_documents(texts)
        return self._run(encoded, cut, "documents")

    def pooled_positions(self, text: str, is_query: bool) -> tuple[list[int], list[int]]:
        """Token ids (BOS/EOS included, unpadded) and the positions pooled for one text (for inspection)."""
        self.warm_up()
        texts = validate_texts([text])
        encoded, _ = (self._tokenize_queries if is_query else self._tokenize_documents)(texts)
        e = encoded[0]
        return e.ids, list(range(e.pool_start, e.pool_end))

    def _run(self, encoded: list[_Encoded], cut: int, what: str) -> list[SparseVector]:
        if cut:
            logger.warning(
                "%s of %s %s exceed max_length=%s tokens and were truncated; raise max_length to keep them whole",
                cut,
                len(encoded),
                what,
                self.max_length,
            )
        out: list[SparseVector | None] = [None] * len(encoded)
        for idx, mat in self._iter_batches(encoded, what):
            for j, vec in zip(idx.tolist(), rows_to_sparse(mat)):
                out[j] = vec
        return out  # type: ignore[return-value]

    def encode_matrix(self, encoded: list[_Encoded], padding_side: str = "left") -> np.ndarray:
        """`[n, k]` L2-normalised weights for pre-tokenised inputs (tests compare padding sides with it)."""
        self.warm_up()
        assert self._head is not None
        result = np.zeros((len(encoded), self._head.shape[0]), dtype=np.float32)
        for idx, mat in self._iter_batches(encoded, "", padding_side):
            result[idx] = mat
        return result

    def _iter_batches(self, encoded: list[_Encoded], what: str, padding_side: str = "left"):
        model, head, device, dtype = self._model, self._head, self._device, self._dtype
        assert model is not None and head is not None and device is not None and dtype is not None
        pad_id = self._tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self._tokenizer.eos_token_id
        lengths = [len(e.ids) for e in encoded]
        bar = progress_bar(len(encoded), self.progress and len(encoded) > self.batch_size, f"LENS {what}".strip())
        try:
            with torch.inference_mode():
                for idx in length_sorted_batches(lengths, self.batch_size):
                    width = max(lengths[i] for i in idx)
                    b = idx.size
                    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
                    mask = torch.zeros((b, width), dtype=torch.long)
                    pool = torch.zeros((b, width), dtype=torch.bool)
                    for r, i in enumerate(idx.tolist()):
                        e, n = encoded[i], lengths[i]
                        off = width - n if padding_side == "left" else 0
                        input_ids[r, off : off + n] = torch.tensor(e.ids)
                        mask[r, off : off + n] = 1
                        pool[r, off + e.pool_start : off + e.pool_end] = True
                    input_ids, mask, pool = input_ids.to(device), mask.to(device), pool.to(device)
                    # Positions count from each text's first real token, so padding side does not matter.
                    position_ids = (mask.cumsum(dim=1) - 1).clamp_(min=0)
                    hidden = model(
                        input_ids=input_ids,
                        attention_mask=padding_only_mask(mask, dtype),
                        position_ids=position_ids,
                        use_cache=False,
                    ).last_hidden_state
                    pooled = max_pool_saturated_logits(hidden, head, pool).float()
                    pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
                    yield idx, pooled.cpu().numpy()
                    bar.update(b)
        finally:
            bar.close()

    # ------------------------------------------------------------------ configuration
    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (see :meth:`from_config`)."""
        return {
            "type": "lens",
            "model": self.model,
            "instruction": self.instruction,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "progress": self.progress,
            "device": self.device,
            "attn_implementation": self.attn_implementation,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LENSEncoder:
        """Rebuild from :meth:`to_config` output; missing keys take their defaults."""
        return cls(**{k: v for k, v in config.items() if k != "type"})

    def save(self, directory: str | Path) -> Path:
        """Write backbone, tokenizer, `lens_head.safetensors` and `lens_config.json`; loadable by this class.

        :returns: the directory.
        """
        from lens_rag.encoders.head_builder import save_lens_model

        self.warm_up()
        assert self._model is not None and self._head is not None and self._dir is not None
        previous: dict[str, Any] = {}
        cfg = self._dir / LENS_CONFIG_FILE
        if cfg.is_file():
            previous = json.loads(cfg.read_text(encoding="utf-8"))
        info = {k: v for k, v in previous.items() if k not in ("encoder", "library_versions")}
        info.setdefault("source_model", str(self._dir))
        return save_lens_model(
            self._model,
            self._tokenizer,
            self._head.float().cpu(),
            directory,
            info=info,
            encoder={"instruction": self.instruction, "max_length": self.max_length},
        )
