"""A lens-rag cross-encoder ranker for Haystack."""

from haystack_integrations.components.rankers.lens_rag.ranker import LensRagRanker

__all__ = ["LensRagRanker"]
