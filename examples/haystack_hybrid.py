"""Hybrid search (BM25 + SPLADE-tiny + MiniLM, min–max fusion) with one Haystack component.

    python examples/haystack_indexing.py && python examples/haystack_hybrid.py
    python examples/haystack_hybrid.py --es-url "$ES_URL"      # on the index haystack_indexing.py wrote there
    python examples/haystack_hybrid.py --save-yaml examples/pipelines/haystack_hybrid.yaml

Every result shows its fused score and each retriever's own score and rank (`meta["lens_rag_sources"]`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from haystack import Pipeline
from haystack_integrations.components.retrievers.lens_rag import LensRagHybridRetriever
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

DEFAULT_STORE = ".lens-rag/haystack-demo"  # where examples/haystack_indexing.py writes


def make_store(store_dir: str, es_url: str | None, index: str) -> object:
    """Our embedded store, or elasticsearch-haystack's (the same components work on both)."""
    if es_url is None:
        return LensRagDocumentStore(store_dir)
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    return ElasticsearchDocumentStore(hosts=es_url, index=index, sparse_vector_field="sparse_vec")


def hybrid_pipeline(store: object, top_k: int = 3) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("retriever", LensRagHybridRetriever(document_store=store, top_k=top_k))
    return pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=DEFAULT_STORE)
    ap.add_argument("--es-url", default=None)
    ap.add_argument("--index", default="lens-rag-haystack-demo")
    ap.add_argument("--query", default="what disease comes from a lack of vitamin C?")
    ap.add_argument("--save-yaml", default=None)
    args = ap.parse_args()

    pipeline = hybrid_pipeline(make_store(args.store, args.es_url, args.index))
    if args.save_yaml:
        Path(args.save_yaml).write_text(pipeline.dumps())
    for rank, doc in enumerate(pipeline.run({"retriever": {"query": args.query}})["retriever"]["documents"], 1):
        sources = ", ".join(f"{k} #{v['rank']}" for k, v in doc.meta["lens_rag_sources"].items())
        print(f"{rank}. {doc.score:.3f} [{sources}] {doc.content[:90]!r}")


if __name__ == "__main__":
    main()
