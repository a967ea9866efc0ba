"""`LensRagLameRRetriever`: BM25 candidates → LLM answers → retrieval with ``q a1 q a2 … q aN``, in one component."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from haystack import Document, Pipeline, default_from_dict, default_to_dict, super_component
from haystack_integrations.components.query.lens_rag import LensRagLameRQueryAugmenter
from haystack_integrations.components.retrievers.lens_rag.hybrid import LensRagHybridRetriever
from haystack_integrations.components.retrievers.lens_rag.retrievers import LensRagBM25Retriever
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

from lens_rag.errors import ConfigurationError

__all__ = ["LensRagLameRRetriever"]


@super_component
class LensRagLameRRetriever:
    """LameR (arXiv 2304.14233) over a `LensRagDocumentStore`: BM25 finds candidates, the LLM answers from them,
    and the second stage retrieves with the query repeated before each answer.

    When the LLM fails, the second stage runs on the original query (a warning says so).

    :param document_store: the store to search.
    :param augmenter: a `LensRagLameRQueryAugmenter` (holds the chat generator or LLM client and LameR's settings).
    :param second_stage: ``"bm25"`` (the paper) or ``"hybrid"`` (BM25 + sparse + dense with the default embedders).
    :param top_k: documents returned.
    :param filters: Haystack filters applied in both stages.

    Usage::

        augmenter = LensRagLameRQueryAugmenter(chat_generator=OpenAIChatGenerator(api_base_url=url, model=m))
        lamer = LensRagLameRRetriever(document_store=store, augmenter=augmenter, second_stage="hybrid")
        lamer.run(query="does vitamin D prevent fractures?")["documents"]
    """

    def __init__(
        self,
        document_store: LensRagDocumentStore,
        augmenter: LensRagLameRQueryAugmenter,
        *,
        second_stage: str = "bm25",
        top_k: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> None:
        if second_stage not in ("bm25", "hybrid"):
            raise ConfigurationError(f"second_stage must be 'bm25' or 'hybrid', got {second_stage!r}")
        self.document_store = document_store
        self.augmenter = augmenter
        self.second_stage = second_stage
        self.top_k = top_k
        self.filters = filters
        first = LensRagBM25Retriever(document_store=document_store, top_k=augmenter.n_candidates, filters=filters)
        second: Any = (
            LensRagBM25Retriever(document_store=document_store, top_k=top_k, filters=filters)
            if second_stage == "bm25"
            else LensRagHybridRetriever(document_store=document_store, top_k=top_k, filters=filters)
        )
        pipeline = Pipeline()
        pipeline.add_component("first_stage", first)
        pipeline.add_component("augmenter", augmenter)
        pipeline.add_component("second_stage", second)
        pipeline.connect("first_stage.documents", "augmenter.documents")
        pipeline.connect("augmenter.query", "second_stage.query")
        self.pipeline = pipeline
        self.input_mapping = {
            "query": ["first_stage.query", "augmenter.query"],
            "filters": ["first_stage.filters", "second_stage.filters"],
            "top_k": ["second_stage.top_k"],
        }
        self.output_mapping = {"second_stage.documents": "documents", "augmenter.fell_back": "fell_back"}

    if TYPE_CHECKING:

        def warm_up(self) -> None: ...

        def run(
            self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
        ) -> dict[str, list[Document]]: ...

        async def run_async(
            self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
        ) -> dict[str, list[Document]]: ...

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            augmenter=self.augmenter.to_dict(),
            second_stage=self.second_stage,
            top_k=self.top_k,
            filters=self.filters,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagLameRRetriever:
        return default_from_dict(cls, data)
