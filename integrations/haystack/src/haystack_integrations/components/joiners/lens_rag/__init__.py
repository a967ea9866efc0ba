"""A lens-rag fusion joiner for Haystack (RRF, min–max, DBSF) that keeps each source's score and rank."""

from haystack_integrations.components.joiners.lens_rag.joiner import LensRagDocumentJoiner

__all__ = ["LensRagDocumentJoiner"]
