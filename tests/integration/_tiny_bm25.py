"""A minimal in-test BM25 retriever over a handful of documents (bm25s), for LLM integration tests."""

from __future__ import annotations

import asyncio

import bm25s

from lens_rag.documents import Document, ScoredDocument

SCIFACT_STYLE_DOCS = [
    Document(
        "vitd",
        "Vitamin D supplementation and fracture risk. In a randomized trial of 25,000 older adults, "
        "daily vitamin D3 did not reduce the incidence of total, nonvertebral or hip fractures compared with placebo.",
        {"title": "Vitamin D and fractures"},
    ),
    Document(
        "aspirin",
        "Aspirin for primary prevention. Low-dose aspirin reduced nonfatal myocardial infarction but "
        "increased major gastrointestinal bleeding in adults without cardiovascular disease.",
        {"title": "Aspirin and heart attacks"},
    ),
    Document(
        "statin",
        "Statins lower LDL cholesterol by inhibiting HMG-CoA reductase and reduce cardiovascular events.",
        {"title": "Statins"},
    ),
    Document("sleep", "Sleep deprivation impairs memory consolidation in the hippocampus of mice.", {"title": "Sleep"}),
    Document(
        "crispr", "CRISPR-Cas9 enables targeted genome editing in human cells with guide RNAs.", {"title": "CRISPR"}
    ),
    Document(
        "malaria",
        "Artemisinin resistance in Plasmodium falciparum malaria is linked to kelch13 mutations.",
        {"title": "Malaria"},
    ),
    Document(
        "exercise", "Regular aerobic exercise lowers blood pressure in adults with hypertension.", {"title": "Exercise"}
    ),
    Document(
        "smoking",
        "Cigarette smoking is the leading cause of lung cancer; quitting reduces the risk.",
        {"title": "Smoking"},
    ),
]


class TinyBM25:
    """`Retriever` over a few documents; indexes on construction (test helper, not library code)."""

    def __init__(self, docs: list[Document] | None = None, name: str = "bm25"):
        self.name = name
        self.docs = docs if docs is not None else SCIFACT_STYLE_DOCS
        self._bm25 = bm25s.BM25()
        self._bm25.index(
            bm25s.tokenize(
                [f"{d.meta.get('title', '')} {d.content}" for d in self.docs], stopwords="en", show_progress=False
            ),
            show_progress=False,
        )
        self.queries: list[str] = []

    def retrieve(self, query: str, top_k: int = 10, filters=None) -> list[ScoredDocument]:
        self.queries.append(query)
        k = min(top_k, len(self.docs))
        if k == 0:
            return []
        ids, scores = self._bm25.retrieve(
            bm25s.tokenize([query], stopwords="en", show_progress=False), k=k, show_progress=False
        )
        return [
            ScoredDocument(self.docs[int(i)], float(s), rank=r + 1) for r, (i, s) in enumerate(zip(ids[0], scores[0]))
        ]

    async def retrieve_async(self, query: str, top_k: int = 10, filters=None) -> list[ScoredDocument]:
        await asyncio.sleep(0)
        return self.retrieve(query, top_k, filters)
