"""Post-hoc attribution on BEIR SciFact claims: how many answer sentences find a supporting passage, and how often
that passage is one of the claim's relevant documents.

For each claim (a fixed random sample, ``--queries N``): hybrid retrieval of ``--top-k`` passages, a cited answer
from the LLM (``lens_rag.answer.answer_question``, the prompt ``lens-rag ask`` and ``lens-rag serve`` use), then
``lens_rag.attribution.attribute_answer`` with the dense encoder (MiniLM) and the lexical score. Reported:

- sentences checked (non-trivial), the share with a supporting passage (support >= threshold);
- attribution precision: the share of supported sentences whose passage is relevant for the claim (qrels);
- the same for the model's own inline ``[n]`` citations, and the share of answers with >= 1 inline / attributed
  citation;
- the ceiling: the share of claims with a relevant passage among the retrieved ones;
- a threshold sweep (no extra LLM calls): supported share and precision at 0.30 … 0.70.

The LLM outputs are cached on disk (``--llm-cache``), so a rerun (another threshold, another weight) costs
no LLM calls. On the shared 2-core machine the local SmolLM2-135M server takes ~30–60 s per answer.

Usage::

    eval "$(scripts/llm-server.sh start)"
    python benchmarks/serve_attribution.py --queries 50 --json benchmarks/results/serve_attribution.json

The data is read from ``../shared/datasets/scifact`` (``--dataset``); never copy it into the repo.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lens_rag.answer import answer_question
from lens_rag.attribution import DEFAULT_THRESHOLD, attribute_answer, dense_embedder
from lens_rag.components import Encoders, build_retriever
from lens_rag.evaluation import load_beir
from lens_rag.indexing import EmbeddingCache, index_documents
from lens_rag.indexing import default_cache_dir as embedding_cache_dir
from lens_rag.llm import LLMCache, make_llm_client
from lens_rag.llm.base import prompt_key
from lens_rag.stores.embedded import EmbeddedStore

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
SWEEP = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


class CachedLLM:
    """An LLM whose answers are kept on disk (keyed by model, prompt and sampling arguments)."""

    def __init__(self, llm: Any, cache: LLMCache) -> None:
        self.llm = llm
        self.cache = cache

    @property
    def model(self) -> str:
        return str(self.llm.model)

    def generate(self, prompt: Any, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]:
        key = prompt_key(self.model, prompt, n, temperature, max_tokens)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        out = self.llm.generate(prompt, n=n, temperature=temperature, max_tokens=max_tokens)
        self.cache.put(key, out, model=self.model)
        return list(out)

    async def generate_async(self, prompt: Any, **kwargs: Any) -> list[str]:  # unused here
        return self.generate(prompt, **kwargs)

    def to_config(self) -> dict[str, Any]:
        return {"type": "cached"}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CachedLLM:
        raise NotImplementedError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="hybrid")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--llm-url", default=None)
    p.add_argument("--llm-model", default=None)
    p.add_argument("--llm-timeout", type=float, default=300.0)
    p.add_argument("--llm-cache", default=str(embedding_cache_dir() / "serve-attribution-llm"))
    p.add_argument("--json", default=None, help="write the results here (rewritten after every claim)")
    return p.parse_args(argv)


def _question(claim: str) -> str:
    claim = claim.strip().rstrip(".")
    return f"Is it true that {claim[:1].lower()}{claim[1:]}?"


def summarise(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    checked = [s for r in rows for s in r["sentences"] if s["status"] != "trivial"]
    supported = [s for s in checked if s["support"] >= threshold]
    relevant = [s for s in supported if s["best_relevant"]]
    inline = [c for r in rows for c in r["inline"]]
    return {
        "claims": len(rows),
        "sentences_checked": len(checked),
        "supported_share": len(supported) / len(checked) if checked else None,
        "attribution_precision": len(relevant) / len(supported) if supported else None,
        "answers_with_attributed_citation": sum(
            any(s["status"] != "trivial" and s["support"] >= threshold for s in r["sentences"]) for r in rows
        ),
        "answers_with_inline_citation": sum(bool(r["inline"]) for r in rows),
        "inline_citations": len(inline),
        "inline_precision": sum(c["relevant"] for c in inline) / len(inline) if inline else None,
        "claims_with_relevant_passage_retrieved": sum(r["relevant_retrieved"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = load_beir(args.dataset)
    ids = sorted(q for q in data.queries if q in data.qrels)
    random.Random(args.seed).shuffle(ids)
    sample = ids[: args.queries]
    encoders = Encoders(progress=False)
    store = EmbeddedStore(None, progress=False)
    started = time.perf_counter()
    index_documents(
        store, [d.without_embeddings() for d in data.corpus], sparse_encoder=encoders.sparse,
        dense_encoder=encoders.dense, cache=EmbeddingCache(embedding_cache_dir() / "embeddings"), progress=False,
    )  # fmt: skip
    print(f"indexed {store.count_documents()} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    retriever = build_retriever(args.method, store, encoders)
    llm = CachedLLM(make_llm_client(args.llm_url, args.llm_model, timeout=args.llm_timeout), LLMCache(args.llm_cache))
    embed = dense_embedder(encoders.dense)
    rows: list[dict[str, Any]] = []
    for i, qid in enumerate(sample, start=1):
        t0 = time.perf_counter()
        relevant = {d for d, score in data.qrels[qid].items() if score > 0}
        answer = answer_question(
            _question(data.queries[qid]), retriever, llm, top_k=args.top_k, max_tokens=args.max_tokens
        )
        t_answer = time.perf_counter() - t0
        attributions = attribute_answer(answer.answer_text, answer.passages, embed=embed, threshold=0.0)
        rows.append(
            {
                "query_id": qid,
                "claim": data.queries[qid],
                "answer": answer.answer_text,
                "relevant_retrieved": any(p.id in relevant for p in answer.passages),
                "inline": [{"number": c.number, "relevant": c.document_id in relevant} for c in answer.citations],
                "sentences": [
                    {
                        "status": a.status,
                        "support": a.support,
                        "lexical": a.lexical,
                        "dense": a.dense,
                        "best": a.best_passage_number,
                        "best_relevant": a.best_passage_number is not None
                        and answer.passages[a.best_passage_number - 1].id in relevant,
                    }
                    for a in attributions
                ],
                "seconds": round(t_answer, 1),
            }
        )
        summary = summarise(rows, args.threshold)
        print(
            f"[{i}/{len(sample)}] {t_answer:.0f}s supported {summary['supported_share']} "
            f"precision {summary['attribution_precision']}",
            file=sys.stderr,
        )
        if args.json:
            result = {
                "settings": {k: v for k, v in vars(args).items() if k not in ("llm_cache", "json")},
                "summary": summary,
                "sweep": {str(t): summarise(rows, t) for t in SWEEP},
                "rows": rows,
            }
            Path(args.json).write_text(json.dumps(result, indent=1))
    summary = summarise(rows, args.threshold)
    print(json.dumps(summary, indent=1))
    for t in SWEEP:
        s = summarise(rows, t)
        print(f"threshold {t:.2f}: supported {s['supported_share']}, precision {s['attribution_precision']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
