"""One exception hierarchy for the whole library.

Every error message names the parameter or resource at fault, the bad value and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuthenticationError",
    "BulkWriteError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DatasetError",
    "EncoderMismatchError",
    "LLMError",
    "LLMTimeoutError",
    "LensRagError",
    "MissingDependencyError",
    "ModelLoadError",
    "StoreCorruptedError",
    "StoreError",
]


class LensRagError(Exception):
    """Base class of every error raised by lens-rag."""


class ConfigurationError(LensRagError, ValueError):
    """A parameter has a value that cannot work; the message says which and how to fix it."""


class MissingDependencyError(LensRagError, ImportError):
    """An optional dependency is not installed; the message gives the `pip install` to run."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'lens-rag[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ModelLoadError(LensRagError):
    """A model directory or checkpoint is missing a part or has the wrong layout."""


class StoreError(LensRagError):
    """A store operation failed."""


class StoreCorruptedError(StoreError):
    """A store directory exists but cannot be read; nothing was overwritten."""


class BulkWriteError(StoreError):
    """Some documents of a write failed. The others were written.

    :param failed: document id -> reason, for every document that was not written.
    :param written: how many documents were written.
    """

    def __init__(self, failed: Mapping[str, str], written: int) -> None:
        self.failed = dict(failed)
        self.written = written
        shown = "; ".join(f"{doc_id}: {reason}" for doc_id, reason in list(self.failed.items())[:10])
        more = f" (and {len(self.failed) - 10} more)" if len(self.failed) > 10 else ""
        super().__init__(
            f"{len(self.failed)} document(s) were not written ({written} were): {shown}{more}. "
            "Fix these documents and write them again; the written ones are kept."
        )


class ConnectionFailedError(StoreError, ConnectionError):
    """A server could not be reached after retries."""


class AuthenticationError(StoreError):
    """A server refused the credentials (HTTP 401) or their privileges (403); the message names what to check.

    Secrets are never part of the message.
    """


class LLMError(LensRagError):
    """The LLM backend failed."""


class LLMTimeoutError(LLMError, TimeoutError):
    """The LLM backend did not answer within the timeout."""


class DatasetError(LensRagError):
    """A dataset folder or file is missing, empty or malformed."""


class EncoderMismatchError(ConfigurationError):
    """A store's vectors were made by other encoders than the ones this write or search uses.

    :param kind: ``"sparse"`` or ``"dense"``.
    :param recorded: the identity the store recorded (see :func:`lens_rag.identity.encoder_identity`).
    :param given: the identity of the encoder of this call.
    :param action: what was attempted, e.g. ``"write to"`` or ``"search"``.
    :param store: how to name the store in the message, e.g. ``"store '/data/notes'"``.
    """

    def __init__(
        self,
        kind: str,
        recorded: Mapping[str, object],
        given: Mapping[str, object],
        *,
        action: str = "use",
        store: str = "the store",
    ) -> None:
        self.kind = kind
        self.recorded = dict(recorded)
        self.given = dict(given)

        def describe(identity: Mapping[str, object]) -> str:
            dim = identity.get("dimension")
            return f"{identity.get('name')!r} (config {identity.get('config_hash')}" + (
                f", {dim} dimensions)" if dim is not None else ")"
            )

        differing = _differing(recorded, given)
        detail = f"; settings that differ: {', '.join(differing)}" if differing else ""
        super().__init__(
            f"cannot {action} {store} with {kind} encoder {describe(given)}: its {kind} vectors were made by "
            f"{describe(recorded)}{detail}. Vectors of different encoders cannot be compared. Use the same "
            f"{kind} encoder as the one that indexed the store (CLI: --{kind}-model {recorded.get('name')}), "
            "or re-index into a new store directory or Elasticsearch index."
        )


def _differing(recorded: Mapping[str, object], given: Mapping[str, object]) -> list[str]:
    a, b = recorded.get("config"), given.get("config")
    keys: list[str] = []
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if recorded.get("dimension") is not None and given.get("dimension") is not None:
        if recorded.get("dimension") != given.get("dimension") and "dimension" not in keys:
            keys.append("dimension")
    return keys
