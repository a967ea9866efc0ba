"""lens-rag: LENS sparse, dense and hybrid retrieval with LameR query augmentation."""

from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import LensRagError
from lens_rag.sparse import SparseVector

__version__ = "0.1.0"

__all__ = ["Document", "LensRagError", "ScoredDocument", "SourceHit", "SparseVector", "__version__"]
