"""Retrieval-augmented answers: hybrid retrieval → ChatPromptBuilder → OpenAIChatGenerator, citing passages.

    eval "$(scripts/llm-server.sh start)"          # local llama.cpp server (sets LENS_RAG_LLM_URL/MODEL)
    python examples/haystack_indexing.py && python examples/haystack_rag.py
    python examples/haystack_rag.py --es-url "$ES_URL"
    python examples/haystack_rag.py --save-yaml examples/pipelines/haystack_rag.yaml

Any OpenAI-compatible server works: the generator reads its URL and model from LENS_RAG_LLM_URL and
LENS_RAG_LLM_MODEL here, and its key from the environment variable it names (never stored in the YAML).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from haystack import Pipeline
from haystack.components.builders import ChatPromptBuilder
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage
from haystack.utils import Secret
from haystack_integrations.components.retrievers.lens_rag import LensRagHybridRetriever
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

DEFAULT_STORE = ".lens-rag/haystack-demo"  # where examples/haystack_indexing.py writes


def make_store(store_dir: str, es_url: str | None, index: str) -> object:
    """Our embedded store, or elasticsearch-haystack's (the same components work on both)."""
    if es_url is None:
        return LensRagDocumentStore(store_dir)
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    return ElasticsearchDocumentStore(hosts=es_url, index=index, sparse_vector_field="sparse_vec")


TEMPLATE = [
    ChatMessage.from_system(
        "Answer the question from the numbered passages only, citing them like [1]. "
        "If they do not contain the answer, say so."
    ),
    ChatMessage.from_user(
        "{% for doc in documents %}[{{ loop.index }}] {{ doc.content }}\n{% endfor %}\nQuestion: {{ question }}"
    ),
]


def rag_pipeline(store: object, llm_url: str, llm_model: str, top_k: int = 3) -> Pipeline:
    os.environ.setdefault("LENS_RAG_LLM_API_KEY", "no-key-needed")  # the local server ignores the key
    pipeline = Pipeline()
    pipeline.add_component("retriever", LensRagHybridRetriever(document_store=store, top_k=top_k))
    pipeline.add_component("prompt", ChatPromptBuilder(template=TEMPLATE, required_variables=["question"]))
    pipeline.add_component(
        "llm",
        OpenAIChatGenerator(
            api_key=Secret.from_env_var("LENS_RAG_LLM_API_KEY"),
            api_base_url=llm_url,
            model=llm_model,
            generation_kwargs={"temperature": 0.0, "max_tokens": 200},
        ),
    )
    pipeline.connect("retriever.documents", "prompt.documents")
    pipeline.connect("prompt.prompt", "llm.messages")
    return pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=DEFAULT_STORE)
    ap.add_argument("--es-url", default=None)
    ap.add_argument("--index", default="lens-rag-haystack-demo")
    ap.add_argument("--question", default="What disease does a lack of vitamin C cause?")
    ap.add_argument("--llm-url", default=os.environ.get("LENS_RAG_LLM_URL", "http://127.0.0.1:8080/v1"))
    ap.add_argument("--llm-model", default=os.environ.get("LENS_RAG_LLM_MODEL", "local"))
    ap.add_argument("--save-yaml", default=None)
    args = ap.parse_args()

    pipeline = rag_pipeline(make_store(args.store, args.es_url, args.index), args.llm_url, args.llm_model)
    if args.save_yaml:
        Path(args.save_yaml).write_text(pipeline.dumps())
    result = pipeline.run(
        {"retriever": {"query": args.question}, "prompt": {"question": args.question}},
        include_outputs_from={"retriever"},
    )
    for i, doc in enumerate(result["retriever"]["documents"], 1):
        print(f"[{i}] {doc.content[:100]!r}")
    print("\nanswer:", result["llm"]["replies"][0].text)


if __name__ == "__main__":
    main()
