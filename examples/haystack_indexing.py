"""Index the sample documents with a Haystack pipeline: SPLADE-tiny + MiniLM embedders → document writer.

    python examples/haystack_indexing.py                                  # embedded store in .lens-rag/haystack-demo
    python examples/haystack_indexing.py --es-url "$ES_URL"               # elasticsearch-haystack's store instead
    python examples/haystack_indexing.py --save-yaml examples/pipelines/haystack_indexing.yaml

Both models ship in PyPI packages, so this runs offline. The saved YAML loads with `Pipeline.loads` and no
deserialization allowlist (the components live in the `haystack_integrations` namespace).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from haystack import Document, Pipeline
from haystack.components.writers import DocumentWriter
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.components.embedders.lens_rag import (
    LensRagDenseDocumentEmbedder,
    LensRagSparseDocumentEmbedder,
)
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

from lens_rag import load_source

DATA = Path(__file__).parent / "data"
DEFAULT_STORE = ".lens-rag/haystack-demo"


def make_store(store_dir: str, es_url: str | None, index: str) -> object:
    """Our embedded store, or elasticsearch-haystack's with a sparse field (the same pipelines work on both)."""
    if es_url is None:
        return LensRagDocumentStore(store_dir)
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    return ElasticsearchDocumentStore(hosts=es_url, index=index, sparse_vector_field="sparse_vec")


def indexing_pipeline(store: object) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("sparse_embedder", LensRagSparseDocumentEmbedder(progress_bar=False))
    pipeline.add_component("dense_embedder", LensRagDenseDocumentEmbedder(progress_bar=False))
    pipeline.add_component("writer", DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE))
    pipeline.connect("sparse_embedder.documents", "dense_embedder.documents")
    pipeline.connect("dense_embedder.documents", "writer.documents")
    return pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=DEFAULT_STORE, help="embedded store directory")
    ap.add_argument("--es-url", default=None, help="index into Elasticsearch at this URL instead")
    ap.add_argument("--index", default="lens-rag-haystack-demo", help="Elasticsearch index name")
    ap.add_argument("--save-yaml", default=None, help="also write the pipeline as YAML to this file")
    args = ap.parse_args()

    pipeline = indexing_pipeline(make_store(args.store, args.es_url, args.index))
    if args.save_yaml:
        Path(args.save_yaml).write_text(pipeline.dumps())
    docs = [Document(id=d.id, content=d.content, meta=d.meta) for d in load_source(DATA, progress=False)]
    result = pipeline.run({"sparse_embedder": {"documents": docs}})
    print(f"indexed {result['writer']['documents_written']} passages into {args.es_url or args.store}")


if __name__ == "__main__":
    main()
