"""LangChain on BEIR SciFact: our LangChain hybrid vs the core it wraps vs LangChain's EnsembleRetriever peer.

Same Elasticsearch server, same data, same MiniLM vectors, one run. Systems (top 100 per query,
nDCG@10 and R@100 over the test queries, latency per query end to end incl. query encoding, systems
interleaved query by query):

- ``core hybrid (bm25+sparse+dense)``: `lens_rag.HybridRetriever` over our `ElasticsearchStore`, default min–max fusion;
- ``langchain_lens_rag HybridRetriever (same)``: the LangChain adapter around exactly that (`invoke`);
- ``langchain_lens_rag HybridRetriever (bm25+dense)``: the peer's composition, with our store and fusion;
- ``peer: EnsembleRetriever (ES BM25 + MiniLM, RRF 0.5/0.5)``: langchain-classic's `EnsembleRetriever` over two
  langchain-elasticsearch retrievers (BM25Strategy and DenseVectorStrategy on one index, as in PEERS.md).

Needs ES_URL and ``pip install langchain-classic langchain-elasticsearch``. Document vectors come from the
shared embedding cache (`$LENS_RAG_CACHE/embeddings`); indices are deleted at the end.

    python benchmarks/langchain_hybrid.py [--data /work/shared/datasets/scifact] [--queries 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from lens_rag.evaluation import evaluate_run, format_table, load_beir

TOP_K = 100
WARMUP = 5


def timed_runs(
    queries: dict[str, str], systems: dict[str, Callable[[str], list[str]]]
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, list[float]]]:
    """Every system on every query, interleaved (the order rotates per query) so load drifts hit all alike."""
    names = list(systems)
    for text in list(queries.values())[:WARMUP]:
        for name in names:
            systems[name](text)
    runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
    ms: dict[str, list[float]] = {name: [] for name in names}
    for i, (qid, text) in enumerate(queries.items()):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t0 = time.perf_counter()
            ids = systems[name](text)
            ms[name].append((time.perf_counter() - t0) * 1000)
            # Rank-based pseudo scores: every system is judged on its order alone.
            runs[name][qid] = {doc_id: float(len(ids) - r) for r, doc_id in enumerate(ids)}
    return runs, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/datasets/scifact")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--es-url", default=os.environ.get("ES_URL"))
    args = parser.parse_args()
    if not args.es_url:
        raise SystemExit('set ES_URL (eval "$(scripts/elasticsearch.sh start)")')

    import langchain_lens_rag as lc
    from elasticsearch import Elasticsearch
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_elasticsearch import BM25Strategy, DenseVectorStrategy, ElasticsearchStore
    from langchain_lens_rag.elasticsearch import doc_with_id

    from lens_rag import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever
    from lens_rag.components import Encoders
    from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents
    from lens_rag.stores.elasticsearch import ElasticsearchStore as LensESStore

    data = load_beir(args.data)
    queries = dict(list(data.queries.items())[: args.queries])
    encoders = Encoders(progress=False)
    prefix = f"lens-rag-bench-lc-{uuid.uuid4().hex[:8]}"
    store = LensESStore(args.es_url, index=f"{prefix}-ours", progress=False)
    client = Elasticsearch(args.es_url, request_timeout=120)
    peer_index = f"{prefix}-peer"
    try:
        t0 = time.perf_counter()
        cache = EmbeddingCache(default_cache_dir() / "embeddings")
        index_documents(
            store, data.corpus, sparse_encoder=encoders.sparse, dense_encoder=encoders.dense, cache=cache, progress=True
        )
        print(f"indexed {len(data.corpus)} docs into our store in {time.perf_counter() - t0:.0f}s", flush=True)

        # The peer's index: same texts, same MiniLM document vectors (from the embedding cache, not re-encoded).
        cached = cache.lookup(encoders.dense, data.corpus)
        if len(cached) != len(data.corpus):
            raise SystemExit(f"{len(cached)}/{len(data.corpus)} dense vectors cached; re-run to fill the cache")
        embeddings = lc.LensRagEmbeddings(encoders.dense)
        dense_peer = ElasticsearchStore(peer_index, embedding=embeddings, client=client, strategy=DenseVectorStrategy())
        ids = [d.id for d in data.corpus]
        dense_peer.add_embeddings(
            [(d.content, [float(x) for x in cached[i]]) for i, d in enumerate(data.corpus)],
            metadatas=[{"doc_id": i} for i in ids],
            ids=ids,
            refresh_indices=True,
        )
        bm25_peer = ElasticsearchStore(peer_index, client=client, strategy=BM25Strategy())
        # fetch_k = kNN num_candidates: 10 x k, as our store asks for
        search_kwargs: dict[str, Any] = {"k": TOP_K, "fetch_k": 10 * TOP_K, "doc_builder": doc_with_id}
        peer = EnsembleRetriever(
            retrievers=[
                bm25_peer.as_retriever(search_kwargs=search_kwargs),
                dense_peer.as_retriever(search_kwargs=search_kwargs),
            ],
            weights=[0.5, 0.5],
        )

        core = HybridRetriever(
            [BM25Retriever(store), SparseRetriever(store, encoders.sparse), DenseRetriever(store, encoders.dense)]
        )
        ours_lc = lc.HybridRetriever(
            retrievers=[
                lc.BM25Retriever(store=store),
                lc.SparseRetriever(store=store, encoder=encoders.sparse),
                lc.DenseRetriever(store=store, encoder=encoders.dense),
            ],
            k=TOP_K,
        )
        ours_lc_2 = lc.HybridRetriever(
            retrievers=[lc.BM25Retriever(store=store), lc.DenseRetriever(store=store, encoder=encoders.dense)], k=TOP_K
        )
        systems: dict[str, Callable[[str], list[str]]] = {
            "core hybrid (bm25+sparse+dense)": lambda q: [h.id for h in core.retrieve(q, top_k=TOP_K)],
            "langchain_lens_rag HybridRetriever (same)": lambda q: [str(d.id) for d in ours_lc.invoke(q)],
            "langchain_lens_rag HybridRetriever (bm25+dense)": lambda q: [str(d.id) for d in ours_lc_2.invoke(q)],
            "peer: EnsembleRetriever (ES BM25 + MiniLM, RRF 0.5/0.5)": lambda q: [
                str(d.id) for d in peer.invoke(q)[:TOP_K]
            ],
        }
        runs, ms = timed_runs(queries, systems)
        scores: dict[str, dict[str, float]] = {}
        p50: dict[str, float] = {}
        for name in systems:
            scores[name] = evaluate_run(runs[name], data.qrels)
            p50[name] = statistics.median(ms[name])
            scores[name]["p50 ms"] = p50[name]
            scores[name]["mean ms"] = statistics.fmean(ms[name])
        print()
        print(f"SciFact test, {len(queries)} queries, top {TOP_K}, ES {args.es_url}, one run")
        print(format_table(scores))
        core_name, lc_name = "core hybrid (bm25+sparse+dense)", "langchain_lens_rag HybridRetriever (same)"
        peer_name = "peer: EnsembleRetriever (ES BM25 + MiniLM, RRF 0.5/0.5)"
        same = sum(list(runs[core_name][q])[:10] == list(runs[lc_name][q])[:10] for q in queries)
        print(f"adapter overhead over the core (p50): {100 * (p50[lc_name] / p50[core_name] - 1):+.1f} %")
        print(f"identical top-10 ids, adapter vs core: {same}/{len(queries)} queries")
        for name in (lc_name, "langchain_lens_rag HybridRetriever (bm25+dense)"):
            print(
                f"{name} vs peer: nDCG@10 {scores[name]['ndcg@10']:.3f} vs {scores[peer_name]['ndcg@10']:.3f}, "
                f"p50 latency ratio peer/ours {p50[peer_name] / p50[name]:.2f}x"
            )
    finally:
        store.delete_index()
        store.close()
        client.indices.delete(index=peer_index, ignore_unavailable=True)
        client.close()


if __name__ == "__main__":
    main()
