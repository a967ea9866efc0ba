"""LameR with the real local LLM server through the `openai` client."""

from __future__ import annotations

import pytest
from _tiny_bm25 import TinyBM25

from lens_rag.lamer import LameRRetriever, compose_query
from lens_rag.llm import OpenAICompatibleClient

pytestmark = pytest.mark.integration

CLAIM = "Vitamin D supplements prevent bone fractures in older adults."


@pytest.fixture(scope="module")
def llm(llm_url, llm_model) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(base_url=llm_url, model=llm_model, timeout=120.0)


def test_augmentation_produces_n_answers_and_the_composed_query(llm, tmp_path):
    first, second = TinyBM25(), TinyBM25(name="second")
    lamer = LameRRetriever(
        first, llm, second_stage=second, n_candidates=5, n_answers=5, max_tokens=48, domain="scientific",
        cache=tmp_path / "cache",
    )  # fmt: skip
    augmented = lamer.augment(CLAIM)
    assert not augmented.fell_back, augmented.reason
    assert len(augmented.answers) == 5 and all(a.strip() for a in augmented.answers)
    assert augmented.text == compose_query(CLAIM, augmented.answers)
    assert augmented.text.startswith(CLAIM + " ") and augmented.text.count(CLAIM) == 5
    assert 'Give a scientific claim "' in augmented.prompt and "1. Vitamin D and fractures." in augmented.prompt

    hits = lamer.retrieve(CLAIM, top_k=3)  # same prompt: answers come from the cache
    assert second.queries[-1] == augmented.text and len(hits) == 3
    assert lamer.stats.llm_calls == 1 and lamer.stats.cache_hits == 1

    requests = llm.usage.requests
    again = LameRRetriever(first, llm, n_candidates=5, n_answers=5, max_tokens=48, domain="scientific",
                           cache=tmp_path / "cache")  # fmt: skip
    assert again.augment(CLAIM).answers == augmented.answers and llm.usage.requests == requests  # disk cache


async def test_async_retrieval_with_the_real_server(llm):
    lamer = LameRRetriever(TinyBM25(), llm, n_candidates=3, n_answers=2, max_tokens=24, cache=False)
    augmented = await lamer.augment_async("Does smoking cause lung cancer?")
    assert not augmented.fell_back and len(augmented.answers) == 2
    hits = await lamer.retrieve_async("Does smoking cause lung cancer?", top_k=2)
    assert len(hits) == 2 and lamer.stats.fallbacks == 0
