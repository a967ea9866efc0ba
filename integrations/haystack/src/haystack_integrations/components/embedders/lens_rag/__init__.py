"""lens-rag embedders for Haystack: sparse (LENS / SPLADE) and dense, for texts and documents."""

from haystack_integrations.components.embedders.lens_rag.dense import (
    LensRagDenseDocumentEmbedder,
    LensRagDenseTextEmbedder,
)
from haystack_integrations.components.embedders.lens_rag.sparse import (
    LensRagSparseDocumentEmbedder,
    LensRagSparseTextEmbedder,
)

__all__ = [
    "LensRagDenseDocumentEmbedder",
    "LensRagDenseTextEmbedder",
    "LensRagSparseDocumentEmbedder",
    "LensRagSparseTextEmbedder",
]
