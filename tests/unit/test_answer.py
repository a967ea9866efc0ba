from __future__ import annotations

import json

import pytest
from _llm_fakes import FakeLLM, FakeRetriever

from lens_rag.answer import (
    Answer,
    answer_question,
    answer_question_async,
    build_answer_prompt,
    format_answer,
    parse_citations,
)
from lens_rag.errors import ConfigurationError, LLMError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes [2].", [2]),
        ("See [1][3] and [1].", [1, 3]),
        ("Both [1, 2] and [4; 5].", [1, 2, 4, 5]),
        ("A range [2-4] and [6–7].", [2, 3, 4, 6, 7]),
        ("No citations, [a] or [].", []),
        ("[ 3 ]", [3]),
    ],
)
def test_parse_citations(text, expected):
    assert parse_citations(text) == expected


def test_prompt_numbers_passages_in_rank_order():
    hits = FakeRetriever().retrieve("q", top_k=3)
    messages = build_answer_prompt("why?", hits)
    assert messages[0]["role"] == "system" and "square brackets" in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]  # one worked example
    user = messages[-1]["content"]
    assert "[1] T0. passage number 0" in user and "[3] T2." in user and "[4]" not in user
    assert user.index("[1]") < user.index("[2]") < user.index("Question: why?")


def test_prompt_without_system_or_example():
    messages = build_answer_prompt("q", [], system_prompt=None, example=None)
    assert [m["role"] for m in messages] == ["user"] and "(no passages were found)" in messages[0]["content"]


def test_prompt_template_must_have_placeholders():
    with pytest.raises(ConfigurationError, match=r"\{passages\}"):
        build_answer_prompt("q", [], template="{question}")


def test_answer_maps_citations_to_retrieved_passages():
    retriever = FakeRetriever()
    llm = FakeLLM(["Topic two is covered [2], also [3][2]; see [9]."])
    answer = answer_question("what about topic 2?", retriever, llm, top_k=4)
    assert [p.id for p in answer.passages] == ["d0", "d1", "d2", "d3"]
    assert [(c.number, c.document_id, c.rank) for c in answer.citations] == [(2, "d1", 2), (3, "d2", 3)]
    assert answer.invalid_citations == [9] and answer.cited and answer.model == "fake-model"
    assert llm.calls[0]["temperature"] == 0.0 and llm.calls[0]["n"] == 1
    assert retriever.queries == [("what about topic 2?", 4, None)]


def test_no_citation_is_reported_honestly():
    answer = answer_question("q", FakeRetriever(), FakeLLM(["I think so."]), top_k=2)
    assert answer.citations == [] and not answer.cited
    text = format_answer(answer)
    assert "cited no passage" in text and "Sources:" not in text
    data = json.loads(answer.to_json())
    assert data["cited"] is False and data["citations"] == [] and "cited no passage" in data["note"]


def test_format_and_json_show_cited_sources():
    answer = answer_question("q", FakeRetriever(), FakeLLM(["Yes [1]."]), top_k=2)
    text = format_answer(answer)
    assert text.startswith("Yes [1].") and "Sources:\n  [1] d0 (rank 1" in text and "T0 —" in text
    data = json.loads(answer.to_json())
    assert data["citations"][0]["document_id"] == "d0" and data["passages"][0]["cited"] is True
    assert data["passages"][1]["cited"] is False and data["answer"] == "Yes [1]."


async def test_async_matches_sync():
    sync = answer_question("q", FakeRetriever(), FakeLLM(["A [1]"]), top_k=3)
    asyn = await answer_question_async("q", FakeRetriever(), FakeLLM(["A [1]"]), top_k=3)
    assert asyn.to_dict() == sync.to_dict()


def test_llm_errors_propagate():
    with pytest.raises(LLMError, match="down"):
        answer_question("q", FakeRetriever(), FakeLLM(error=LLMError("down")))


@pytest.mark.parametrize(("question", "top_k", "message"), [("", 5, "question must be"), ("q", 0, "top_k must be")])
def test_invalid_arguments(question, top_k, message):
    with pytest.raises(ConfigurationError, match=message):
        answer_question(question, FakeRetriever(), FakeLLM(), top_k=top_k)


def test_answer_dataclass_defaults():
    assert not Answer("q", "a", []).cited
