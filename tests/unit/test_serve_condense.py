"""Follow-up questions become standalone search queries (lens_rag.serve.condense)."""

from __future__ import annotations

import pytest
from _llm_fakes import FakeLLM

from lens_rag.errors import LLMError
from lens_rag.serve.condense import condense_query_async, keyword_condense

pytestmark = pytest.mark.unit

TALK = [
    ("system", "be nice"),
    ("user", "What causes scurvy?"),
    ("assistant", "A lack of vitamin C causes it."),
    ("user", "How is it treated?"),
]


def test_keyword_fallback_carries_the_earlier_user_subject_not_the_assistants_words() -> None:
    query = keyword_condense(TALK)
    assert query == "How is it treated? causes scurvy"
    assert "vitamin" not in query


async def test_first_question_is_used_as_is_without_an_llm_call() -> None:
    llm = FakeLLM(["should not be used"])
    result = await condense_query_async([("user", "  What causes scurvy? ")], llm)
    assert (result.query, result.how) == ("What causes scurvy?", "as-is")
    assert llm.calls == []


async def test_llm_rewrite_is_used_when_it_stays_on_the_subject() -> None:
    llm = FakeLLM(['Rewritten question: "How is scurvy treated?"'])
    result = await condense_query_async(TALK, llm)
    assert (result.query, result.how) == ("How is scurvy treated?", "llm")
    assert "What causes scurvy?" in llm.calls[0]["prompt"]


@pytest.mark.parametrize("rewrite", ["How is it treated?", "", "Volcanoes erupt. " * 40])
async def test_off_subject_empty_or_rambling_rewrites_fall_back_to_keywords(rewrite: str) -> None:
    result = await condense_query_async(TALK, FakeLLM([rewrite]))
    assert (result.query, result.how) == ("How is it treated? causes scurvy", "keywords")


async def test_llm_failure_or_no_llm_falls_back_to_keywords() -> None:
    failed = await condense_query_async(TALK, FakeLLM(error=LLMError("down")))
    assert failed.how == "keywords"
    assert (await condense_query_async(TALK, None)).how == "keywords"
