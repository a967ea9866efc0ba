"""LameR query augmentation for Haystack."""

from haystack_integrations.components.query.lens_rag.lamer import LensRagLameRQueryAugmenter

__all__ = ["LensRagLameRQueryAugmenter"]
