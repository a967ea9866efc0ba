"""Index the sample documents and run a hybrid (BM25 + SPLADE + MiniLM) search with the Python API.

    python examples/hybrid_search.py                      # embedded store in a temporary directory
    python examples/hybrid_search.py --es-url "$ES_URL"   # the same on Elasticsearch

Every result shows its fused score and each retriever's own rank.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lens_rag import (
    BM25Retriever,
    DenseRetriever,
    EmbeddedStore,
    HybridRetriever,
    MLMSparseEncoder,
    SentenceTransformerDenseEncoder,
    SparseRetriever,
    index_documents,
    load_source,
)

DATA = Path(__file__).parent / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--es-url", default=None, help="use Elasticsearch at this URL instead of the embedded store")
    ap.add_argument("--query", default="what disease comes from a lack of vitamin C?")
    args = ap.parse_args()

    sparse, dense = MLMSparseEncoder(progress=False), SentenceTransformerDenseEncoder(progress=False)
    if args.es_url:
        from lens_rag import ElasticsearchStore

        store = ElasticsearchStore(args.es_url, index="lens-rag-example", dense_dims=dense.dimension)
    else:
        store = EmbeddedStore(Path(tempfile.mkdtemp()) / "store")
    with store:
        report = index_documents(store, load_source(DATA), sparse_encoder=sparse, dense_encoder=dense, progress=False)
        print(f"indexed {report.written} passages")
        hybrid = HybridRetriever(
            [BM25Retriever(store), SparseRetriever(store, sparse), DenseRetriever(store, dense)], candidate_k=50
        )
        for hit in hybrid.retrieve(args.query, top_k=3):
            ranks = ", ".join(f"{name} #{h.rank}" for name, h in hit.sources.items())
            print(f"{hit.rank}. {hit.score:.4f} {hit.id} ({ranks})\n   {hit.document.content[:120]}...")
        if args.es_url:
            store.delete_index()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
