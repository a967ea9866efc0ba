"""Local generation with transformers from the packaged SmolLM2 GGUF (converted once, then cached as safetensors)."""

from __future__ import annotations

import pytest

from lens_rag.llm import TransformersClient

pytestmark = pytest.mark.integration


def test_one_short_generation_from_the_packaged_gguf():
    client = TransformersClient(seed=0)
    out = client.generate("What is the capital of France? Answer in one word.", n=2, temperature=1.0, max_tokens=8)
    assert len(out) == 2 and all(text.strip() for text in out)
    greedy = client.generate("What is the capital of France? Answer in one word.", max_tokens=8)
    assert "Paris" in greedy[0]


def test_greedy_n_returns_the_greedy_answer_n_times_and_lamer_uses_it():
    from lens_rag.documents import Document
    from lens_rag.lamer import LameRRetriever
    from lens_rag.retrieval import BM25Retriever
    from lens_rag.stores.embedded import EmbeddedStore

    client = TransformersClient()
    prompt = "What is the capital of France? Answer in one word."
    out = client.generate(prompt, n=3, temperature=0.0, max_tokens=8)
    assert out == [client.generate(prompt, max_tokens=8)[0]] * 3 and "Paris" in out[0]
    store = EmbeddedStore(None, progress=False)
    store.write_documents([Document(id="p", content="Paris is the capital of France.")])
    lamer = LameRRetriever(BM25Retriever(store), client, n_answers=3, temperature=0.0, max_tokens=16, cache=False)
    augmented = lamer.augment("capital of France")
    assert not augmented.fell_back and len(augmented.answers) == 3 and len(set(augmented.answers)) == 1
