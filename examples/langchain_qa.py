"""Question answering with LangChain over lens-rag: hybrid retrieval -> prompt -> chat model -> streamed, cited answer.

    eval "$(scripts/llm-server.sh start)"            # offline default: SmolLM2-135M on llama.cpp's server
    python examples/langchain_qa.py                  # embedded store in a temporary directory
    python examples/langchain_qa.py --es-url "$ES_URL"
    python examples/langchain_qa.py --llm-url https://api.openai.com/v1 --llm-model gpt-4o-mini   # a stronger model

The chain is plain LCEL: the retriever's documents become numbered passages, the model is asked to
cite them as [n], and the answer streams token by token. After the answer, the passages it cited are
listed with their ids and each retriever's own rank (lens-rag keeps them through fusion).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_lens_rag import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever
from langchain_openai import ChatOpenAI

from lens_rag import EmbeddedStore, MLMSparseEncoder, SentenceTransformerDenseEncoder, index_documents, load_source

DATA = Path(__file__).parent / "data"
PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Answer the question using only the numbered passages. Cite the passages you used as [1], [2]. "
            "If they do not contain the answer, say so.",
        ),
        ("human", "Passages:\n{passages}\n\nQuestion: {question}"),
    ]
)


def numbered(docs: list) -> str:
    return "\n\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(docs, start=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--es-url", default=None, help="use Elasticsearch at this URL instead of the embedded store")
    ap.add_argument("--question", default="What disease comes from a lack of vitamin C, and why?")
    ap.add_argument("--llm-url", default=os.environ.get("LENS_RAG_LLM_URL"))
    ap.add_argument("--llm-model", default=os.environ.get("LENS_RAG_LLM_MODEL") or "smollm2-135m-instruct")
    ap.add_argument("-k", type=int, default=3, help="passages shown to the model")
    args = ap.parse_args()
    if not args.llm_url:
        raise SystemExit('no LLM endpoint: run eval "$(scripts/llm-server.sh start)" or pass --llm-url')

    sparse, dense = MLMSparseEncoder(progress=False), SentenceTransformerDenseEncoder(progress=False)
    if args.es_url:
        from lens_rag import ElasticsearchStore

        store = ElasticsearchStore(args.es_url, index="lens-rag-example-langchain", dense_dims=dense.dimension)
    else:
        store = EmbeddedStore(Path(tempfile.mkdtemp()) / "store")
    with store:
        index_documents(
            store, load_source(DATA, progress=False), sparse_encoder=sparse, dense_encoder=dense, progress=False
        )
        retriever = HybridRetriever(
            retrievers=[
                BM25Retriever(store=store),
                SparseRetriever(store=store, encoder=sparse),
                DenseRetriever(store=store, encoder=dense),
            ],
            k=args.k,
        )
        llm = ChatOpenAI(
            base_url=args.llm_url,
            model=args.llm_model,
            api_key=os.environ.get("OPENAI_API_KEY") or os.environ.get("LENS_RAG_LLM_API_KEY") or "not-needed",
            temperature=0,
            max_tokens=200,
            timeout=120,
        )
        docs = retriever.invoke(args.question)
        chain = (
            {"passages": RunnableLambda(lambda _: numbered(docs)), "question": RunnablePassthrough()}
            | PROMPT
            | llm
            | StrOutputParser()
        )
        print(f"Q: {args.question}\nA: ", end="", flush=True)
        answer = ""
        for token in chain.stream(args.question):
            answer += token
            print(token, end="", flush=True)
        print()
        cited = sorted({int(n) for n in re.findall(r"\[(\d+)\]", answer) if 1 <= int(n) <= len(docs)})
        print("\nCited passages:" if cited else "\nThe model cited no passage. Retrieved passages:")
        for i in cited or range(1, len(docs) + 1):
            d = docs[i - 1]
            ranks = ", ".join(f"{name} #{s['rank']}" for name, s in d.metadata["lens_rag"]["sources"].items())
            print(f"  [{i}] {d.id} ({ranks}): {' '.join(d.page_content.split())[:100]}...")
        if args.es_url:
            store.delete_index()


if __name__ == "__main__":
    main()
