"""Serialisable components: one registry, :func:`to_config` and :func:`from_config` for all of them.

Every store, retriever, encoder, reranker and LLM client has ``to_config() -> dict`` (JSON only, with a
``"type"`` naming it in :data:`REGISTRY`) and a classmethod ``from_config(dict)``. Components that hold
other components (a retriever's store and encoder, a hybrid's retrievers, LameR's LLM) nest their
configs, so a whole retrieval setup is one JSON document::

    from lens_rag.config import from_config, to_config

    config = to_config(hybrid)                     # {"type": "hybrid_retriever", "retrievers": [...], ...}
    text = json.dumps(config)
    same = from_config(json.loads(text))           # nothing connects or loads until first use

Secrets are never in a config: components store the *name* of the environment variable that holds
them (e.g. ``"api_key_env": "OPENAI_API_KEY"``) and read it when they first connect.

Within one :func:`from_config` call, equal nested configs build one shared instance: the three
retrievers of a hybrid over one store get one store object (one connection, one cache) and
retrievers over the same encoder share the loaded model.

The registry maps a type name to ``"module:Class"`` and imports lazily, so importing this module
loads neither torch nor a client library. Register your own components with :func:`register`.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from lens_rag.errors import ConfigurationError

__all__ = [
    "REGISTRY",
    "config_params",
    "from_config",
    "register",
    "registered_type",
    "resolve",
    "shared_instances",
    "to_config",
]

#: Type name -> ``"module:Class"`` (imported on first use) or, for classes registered at run time, the class.
#: Encoder and LLM names predate the registry and are kept, because stores already record encoder configs
#: under them.
REGISTRY: dict[str, str | type] = {
    # stores
    "embedded_store": "lens_rag.stores.embedded:EmbeddedStore",
    "elasticsearch_store": "lens_rag.stores.elasticsearch:ElasticsearchStore",
    # retrievers
    "bm25_retriever": "lens_rag.retrieval:BM25Retriever",
    "sparse_retriever": "lens_rag.retrieval:SparseRetriever",
    "dense_retriever": "lens_rag.retrieval:DenseRetriever",
    "hybrid_retriever": "lens_rag.retrieval:HybridRetriever",
    "reranking_retriever": "lens_rag.retrieval:RerankingRetriever",
    "lamer_retriever": "lens_rag.lamer:LameRRetriever",
    # encoders
    "mlm": "lens_rag.encoders.mlm:MLMSparseEncoder",
    "lens": "lens_rag.encoders.lens:LENSEncoder",
    "sentence-transformers": "lens_rag.encoders.dense:SentenceTransformerDenseEncoder",
    # reranker
    "cross_encoder_reranker": "lens_rag.rerank:CrossEncoderReranker",
    # LLM clients
    "openai": "lens_rag.llm.openai_client:OpenAICompatibleClient",
    "transformers": "lens_rag.llm.transformers_client:TransformersClient",
}

# Instances built so far in the current from_config call (canonical JSON -> instance); None outside one.
_SHARED: ContextVar[dict[str, Any] | None] = ContextVar("lens_rag_config_shared", default=None)


def register(name: str, target: str | type) -> None:
    """Register a component type under `name` so :func:`from_config` can build it.

    :param name: the ``"type"`` its ``to_config()`` writes.
    :param target: ``"module:Class"`` to import it lazily, or the class itself.
    :raises ConfigurationError: if `name` is taken by another class or `target` is malformed.
    """
    if isinstance(target, str) and ":" not in target:
        raise ConfigurationError(f"target must be a class or 'module:Class', got {target!r}")
    if not isinstance(target, str | type):
        raise ConfigurationError(f"target must be a class or 'module:Class', got {target!r}")
    existing = REGISTRY.get(name)
    if existing is not None and existing != target:
        raise ConfigurationError(f"component type {name!r} is already registered as {existing}; pick another name")
    REGISTRY[name] = target


def resolve(name: str) -> type:
    """The class registered under `name` (imported on first use).

    :raises ConfigurationError: if `name` is not registered or its module cannot be imported.
    """
    path = REGISTRY.get(name)
    if path is None:
        raise ConfigurationError(
            f"unknown component type {name!r} in the configuration; known types: {', '.join(sorted(REGISTRY))} "
            "(register your own with lens_rag.config.register)"
        )
    if isinstance(path, type):
        return path
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigurationError(f"component type {name!r} needs {module_name}, which cannot be imported: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise ConfigurationError(f"component type {name!r} is registered as {path}, which is not a class")
    return obj


def registered_type(cls: type) -> str | None:
    """The registered type name of `cls` (or of its nearest registered base), or `None`.

    Only registry entries whose module is already imported are considered (a class can only come
    from an imported module), so this imports nothing.
    """
    candidates: dict[type, str] = {}
    for name, path in REGISTRY.items():
        if isinstance(path, type):
            candidates.setdefault(path, name)
            continue
        module_name, _, attr = path.partition(":")
        module = sys.modules.get(module_name)
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type):
            candidates.setdefault(obj, name)
    for klass in cls.__mro__:
        if klass in candidates:
            return candidates[klass]
    return None


def to_config(obj: Any) -> dict[str, Any]:
    """`obj.to_config()`, checked: a registered ``"type"`` and nothing but JSON values.

    :param obj: a store, retriever, encoder, reranker or LLM client.
    :returns: a dict that :func:`from_config` turns back into an equivalent component.
    :raises ConfigurationError: if `obj` has no `to_config`, its type is not registered, or the config is not JSON.
    """
    method = getattr(obj, "to_config", None)
    if not callable(method):
        raise ConfigurationError(
            f"{type(obj).__name__} has no to_config(), so it cannot be saved in a configuration; give it "
            "to_config()/from_config() and register it with lens_rag.config.register"
        )
    config = method()
    if not isinstance(config, dict):
        raise ConfigurationError(f"{type(obj).__name__}.to_config() returned {type(config).__name__}, not a dict")
    kind = config.get("type")
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise ConfigurationError(
            f"{type(obj).__name__}.to_config() has type {kind!r}, which is not registered; "
            "register it with lens_rag.config.register"
        )
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"{type(obj).__name__}.to_config() is not JSON-serialisable: {e}") from e
    return config


@contextmanager
def shared_instances() -> Iterator[None]:
    """Within this block, :func:`from_config` builds one instance per distinct config (see the module docs).

    Composite components' `from_config` opens it, so nested calls share; nesting is harmless.
    """
    if _SHARED.get() is not None:
        yield
        return
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def from_config(config: Mapping[str, Any]) -> Any:
    """Build the component a config describes, dispatching on its ``"type"`` through :data:`REGISTRY`.

    Nothing connects or loads here: components do I/O on first use.

    :param config: a dict from :func:`to_config` (possibly after a JSON round trip).
    :returns: the component.
    :raises ConfigurationError: if the config has no or an unknown ``"type"`` or the component refuses it.
    """
    if not isinstance(config, Mapping):
        raise ConfigurationError(f"a component config must be a dict with a 'type', got {type(config).__name__}")
    kind = config.get("type")
    if not isinstance(kind, str):
        raise ConfigurationError(f"the component config has no 'type' naming what to build; got keys {sorted(config)}")
    cls = resolve(kind)
    with shared_instances():
        shared = _SHARED.get()
        assert shared is not None
        try:
            key: str | None = json.dumps(config, sort_keys=True)
        except (TypeError, ValueError):
            key = None
        if key is not None and key in shared:
            return shared[key]
        build = getattr(cls, "from_config", None)
        if not callable(build):
            raise ConfigurationError(f"component type {kind!r} ({cls.__name__}) has no from_config()")
        obj = build(dict(config))
        if key is not None:
            shared[key] = obj
        return obj


def config_params(
    config: Mapping[str, Any], owner: str, allowed: Iterable[str], required: Iterable[str] = ()
) -> dict[str, Any]:
    """The constructor arguments in `config` (everything but ``"type"``), checked against what `owner` accepts.

    For components' `from_config`: unknown keys are refused (a typo would otherwise be silently ignored).

    :param config: the config dict.
    :param owner: the class name, for the error message.
    :param allowed: the keys the component accepts (besides ``"type"``).
    :param required: the keys it needs.
    :raises ConfigurationError: naming unknown or missing keys.
    """
    allowed = set(allowed)
    params = {k: v for k, v in config.items() if k != "type"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigurationError(f"unknown {owner} config keys {unknown}; allowed keys: {', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in params]
    if missing:
        raise ConfigurationError(f"{owner} config needs {', '.join(repr(k) for k in missing)}")
    return params
