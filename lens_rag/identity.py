"""Which encoders made a store's vectors, recorded in the store and checked before every write and search.

Sparse and dense vectors are only comparable when the query and the documents were encoded by the
same model with the same settings. The first write of vectors records the encoders' identity in the
store's info, under ``info["encoders"]["sparse"|"dense"]`` (embedded store: in SQLite with the data;
Elasticsearch: in the index mapping's ``_meta``); a later write or search with other encoders is
refused with :class:`~lens_rag.errors.EncoderMismatchError`, which names both.

An identity is a small JSON dict::

    {"kind": "sparse", "name": "splade-tiny", "config_hash": "3f0c…", "dimension": None,
     "type": "mlm", "config": {"model": "splade-tiny", "max_length": 256, ...}}

- ``name``: the model alias, Hub name or absolute path (a path to a packaged default model is
  written as its alias, so a store moves between virtual environments).
- ``config_hash``: a hash of the encoder's ``to_config()`` without the keys that only change how
  it runs, not the vectors it makes (:data:`RUNTIME_KEYS`: progress, batch size, device, threads,
  dtype, …) and without ``type`` (two implementations of one model make the same vectors).
- ``dimension``: the dense vector length (``None`` for sparse encoders, whose vocabulary is part
  of the model named).
- ``config``: the same configuration, kept so that a reader can rebuild the encoder.

Usage::

    ensure_encoder(store, "sparse", sparse_encoder, record=True)   # before writing vectors
    ensure_encoder(store, "dense", dense_encoder, record=False)    # before searching
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from lens_rag.errors import ConfigurationError, EncoderMismatchError, ModelLoadError

__all__ = [
    "RUNTIME_KEYS",
    "EncoderKind",
    "encoder_identity",
    "ensure_encoder",
    "identity_from_config",
    "normalize_model_name",
    "recorded_identity",
    "same_encoder",
]

logger = logging.getLogger(__name__)

EncoderKind = Literal["sparse", "dense"]
_KINDS = ("sparse", "dense")

#: Configuration keys that change how an encoder runs, never the vectors it makes.
RUNTIME_KEYS = frozenset(
    {
        "progress",
        "show_progress",
        "batch_size",
        "device",
        "threads",
        "num_threads",
        "dtype",
        "attn_implementation",
        "cache_dir",
        "timeout",
        # The query side only: a store's vectors are the document side's (lens-rag adapt trains query encoders).
        "query_model",
    }
)
# Left out of the hash too: the registered class name (two implementations of one model agree).
_NOT_HASHED = RUNTIME_KEYS | {"type"}


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ConfigurationError(f"kind must be 'sparse' or 'dense', got {kind!r}")


def normalize_model_name(name: Any) -> Any:
    """An alias or Hub name stays as it is; an existing local path becomes absolute (or its alias)."""
    if not isinstance(name, str) or not name:
        return name
    from lens_rag.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL, minilm_path, splade_tiny_path

    if name in (DEFAULT_SPARSE_MODEL, DEFAULT_DENSE_MODEL):
        return name
    path = Path(name).expanduser()
    try:
        if not path.exists():
            return name
        resolved = path.resolve()
    except OSError:
        return name
    for alias, locate in ((DEFAULT_SPARSE_MODEL, splade_tiny_path), (DEFAULT_DENSE_MODEL, minilm_path)):
        try:
            if resolved == locate().resolve():
                return alias
        except (ModelLoadError, OSError):
            continue
    return str(resolved)


def identity_from_config(
    kind: str, config: Mapping[str, Any], *, dimension: int | None = None, name: str | None = None
) -> dict[str, Any]:
    """The identity of an encoder described by its ``to_config()`` (e.g. one a store recorded earlier).

    :param kind: ``"sparse"`` or ``"dense"``.
    :param config: the encoder's configuration; runtime-only keys are dropped.
    :param dimension: the dense vector length, if known.
    :param name: the model name to show when the configuration has no ``model`` key.
    :returns: the identity dict (see the module docstring).
    :raises ConfigurationError: if `kind` is not ``"sparse"`` or ``"dense"``.
    """
    _check_kind(kind)
    kept: dict[str, Any] = {}
    for key, value in config.items():
        if key in RUNTIME_KEYS:
            continue
        kept[str(key)] = normalize_model_name(value) if key == "model" else value
    hashed = {k: v for k, v in kept.items() if k not in _NOT_HASHED}
    blob = json.dumps(hashed, sort_keys=True, default=str, separators=(",", ":"))
    model = kept.get("model")
    return {
        "kind": kind,
        "name": str(model) if model is not None else (name or "?"),
        "config_hash": hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16],
        "dimension": None if dimension is None else int(dimension),
        "type": kept.get("type"),
        # JSON round trip: what a store records is plain JSON, so compare like with like.
        "config": json.loads(json.dumps(kept, default=str)),
    }


def _guess_kind(encoder: Any) -> str:
    # Look at the class, not the instance: reading `dimension` loads a dense model.
    if "dimension" in vars(type(encoder)) or "dimension" in getattr(encoder, "__dict__", {}):
        return "dense"
    return "sparse"


def encoder_identity(encoder: Any, kind: str | None = None) -> dict[str, Any]:
    """The identity of an encoder: kind, model name, configuration hash and (dense) dimension.

    For a dense encoder this reads ``encoder.dimension``, which loads the model if it is not loaded.

    :param encoder: a sparse or dense encoder, ideally with ``to_config()``.
    :param kind: ``"sparse"`` or ``"dense"``; default: dense when the encoder has a ``dimension``.
    :returns: the identity dict (see the module docstring).
    :raises ConfigurationError: if `kind` is not ``"sparse"`` or ``"dense"``.
    """
    kind = _guess_kind(encoder) if kind is None else kind
    _check_kind(kind)
    to_config = getattr(encoder, "to_config", None)
    name = getattr(encoder, "name", None) or type(encoder).__name__
    config: Mapping[str, Any] = to_config() if callable(to_config) else {"model": name}
    dimension = int(encoder.dimension) if kind == "dense" else None
    return identity_from_config(kind, config, dimension=dimension, name=str(name))


def recorded_identity(info: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The identity of the `kind` encoder a store's info records, or ``None``.

    Stores written before identities existed kept the encoder's ``to_config()`` under
    ``info["sparse"|"dense"]``; that is read too.

    :param info: the store's ``info``.
    :param kind: ``"sparse"`` or ``"dense"``.
    :returns: the recorded identity, or ``None`` when the store records none.
    """
    _check_kind(kind)
    encoders = info.get("encoders")
    if isinstance(encoders, Mapping) and isinstance(encoders.get(kind), Mapping):
        return dict(encoders[kind])
    legacy = info.get(kind)
    if isinstance(legacy, Mapping) and "model" in legacy:
        return identity_from_config(kind, legacy)
    return None


def same_encoder(recorded: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether two identities make comparable vectors: same configuration hash, same dimension if both known."""
    if recorded.get("config_hash") != given.get("config_hash"):
        return False
    a, b = recorded.get("dimension"), given.get("dimension")
    return a is None or b is None or a == b


def _describe(store: Any) -> str:
    path = getattr(store, "path", None)
    if path is not None:
        return f"store {str(path)!r}"
    index = getattr(store, "index", None)
    if isinstance(index, str):
        return f"Elasticsearch index {index!r}"
    return "the store"


def _record(store: Any, kind: str, identity: Mapping[str, Any]) -> None:
    set_info = getattr(store, "set_info", None)
    if not callable(set_info):
        return
    info = dict(store.info)  # read again right before writing: merge, never drop other keys
    encoders = dict(info.get("encoders") or {})
    encoders[kind] = dict(identity)
    info["encoders"] = encoders
    set_info(info)
    logger.debug("recorded %s encoder %s (%s) in %s", kind, identity.get("name"), identity.get("config_hash"), store)


def ensure_encoder(store: Any, kind: str, encoder: Any, *, record: bool) -> None:
    """Check that `encoder` is the `kind` encoder the store's vectors were made with; record it if asked.

    - The store records no such encoder: with ``record=True`` this one is recorded (merged into the
      store's info); with ``record=False`` nothing is checked (nothing to compare with).
    - It records the same encoder: nothing to do.
    - It records another one: :class:`EncoderMismatchError` — unless the store holds no documents,
      in which case nothing made by the old encoder is left and ``record=True`` records the new one.

    Stores without ``info`` (third-party stores) are not checked.

    :param store: the store (embedded or Elasticsearch).
    :param kind: ``"sparse"`` or ``"dense"``.
    :param encoder: the encoder about to write or search; ``None`` does nothing.
    :param record: ``True`` before a write, ``False`` before a search.
    :raises EncoderMismatchError: if the store's vectors were made by another encoder.
    :raises ConfigurationError: if `kind` is not ``"sparse"`` or ``"dense"``.
    """
    _check_kind(kind)
    if encoder is None:
        return
    info = getattr(store, "info", None)
    if not isinstance(info, Mapping):
        return
    recorded = recorded_identity(info, kind)
    given = encoder_identity(encoder, kind)
    if recorded is not None and same_encoder(recorded, given):
        encoders = info.get("encoders")
        if record and not (isinstance(encoders, Mapping) and kind in encoders):  # an older store: upgrade it
            _record(store, kind, given)
        return
    if recorded is not None and store.count_documents() > 0:
        raise EncoderMismatchError(
            kind, recorded, given, action="write to" if record else "search", store=_describe(store)
        )
    if record:
        _record(store, kind, given)
