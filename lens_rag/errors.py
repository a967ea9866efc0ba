"""One exception hierarchy for the whole library.

Every error message names the parameter or resource at fault, the bad value and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "BulkWriteError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DatasetError",
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


class LLMError(LensRagError):
    """The LLM backend failed."""


class LLMTimeoutError(LLMError, TimeoutError):
    """The LLM backend did not answer within the timeout."""


class DatasetError(LensRagError):
    """A dataset folder or file is missing, empty or malformed."""
