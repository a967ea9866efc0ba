from __future__ import annotations

import logging

import pytest
from _llm_fakes import FakeLLM, FakeRetriever

from lens_rag.errors import ConfigurationError, LLMError, LLMTimeoutError
from lens_rag.lamer import (
    LAMER_TEMPLATES,
    LameRRetriever,
    approx_token_count,
    build_prompt,
    compose_query,
    truncate_candidates,
)
from lens_rag.llm.base import LLMCache, LLMFallbackWarning

pytestmark = pytest.mark.unit


def test_compose_query_interleaves_query_and_answers():
    assert compose_query("q", ["a1", "a2", "a3"]) == "q a1 q a2 q a3"


def test_compose_query_skips_empty_answers_and_keeps_query_without_answers():
    assert compose_query("q", ["", " a ", "  "]) == "q a"
    assert compose_query("q", []) == "q"


def test_build_prompt_default_wording_and_numbering():
    prompt = build_prompt("what is x?", ["first", "second"], LAMER_TEMPLATES["default"])
    assert prompt == (
        'Give a question "what is x?" and its possible answering passages (most of these passages are wrong) '
        "enumerated as:\n1. first\n2. second\nplease write a correct answering passage."
    )


def test_build_prompt_keeps_braces_in_query_and_passages():
    prompt = build_prompt("{x} {candidates}?", ["a {b}"], "Q: {query}\n{candidates}")
    assert prompt == "Q: {x} {candidates}?\n1. a {b}"


def test_build_prompt_requires_query_placeholder():
    with pytest.raises(ConfigurationError, match=r"\{query\}"):
        build_prompt("q", ["a"], "no placeholder here")


def test_truncate_candidates_fits_budget_and_spares_short_passages():
    long = " ".join(f"w{i}" for i in range(500))
    texts = ["short one", long, long]
    out = truncate_candidates(texts, budget=100)
    assert out[0] == "short one"
    assert sum(approx_token_count(t) for t in out) <= 100 + 2 * 1  # the "…" marks
    assert out[1].endswith("…") and approx_token_count(out[1]) >= 45


def test_truncate_candidates_untouched_under_budget():
    assert truncate_candidates(["a b", "c"], budget=10) == ["a b", "c"]


def test_retrieve_sends_composed_query_to_second_stage():
    first, second = FakeRetriever(name="bm25"), FakeRetriever(name="hybrid")
    llm = FakeLLM(["ans one", "ans two"])
    lamer = LameRRetriever(first, llm, second_stage=second, n_candidates=3, n_answers=4)
    hits = lamer.retrieve("my query", top_k=2, filters={"lang": "en"})
    assert [h.id for h in hits] == ["d0", "d1"]
    assert first.queries == [("my query", 3, {"lang": "en"})]
    assert second.queries == [
        ("my query ans one my query ans two my query ans one my query ans two", 2, {"lang": "en"})
    ]
    call = llm.calls[0]
    assert (call["n"], call["temperature"], call["max_tokens"]) == (4, 1.0, 128)
    assert "1. T0. passage number 0" in call["prompt"] and "3. T2." in call["prompt"] and "4. " not in call["prompt"]
    assert lamer.stats.llm_calls == 1 and lamer.stats.queries == 1


def test_second_stage_defaults_to_first_stage():
    first = FakeRetriever()
    lamer = LameRRetriever(first, FakeLLM(["a"]), n_answers=1)
    lamer.retrieve("q", top_k=5)
    assert [q[0] for q in first.queries] == ["q", "q a"]


def test_augment_returns_answers_and_text():
    lamer = LameRRetriever(FakeRetriever(), FakeLLM(["  first\n answer ", ""]), n_answers=2)
    aug = lamer.augment("q")
    assert aug.answers == ["first answer"]
    assert aug.text == "q first answer"
    assert not aug.fell_back and aug.reason is None and len(aug.candidates) == 10


def test_cache_avoids_second_llm_call_and_keys_on_model(tmp_path):
    llm = FakeLLM(["a"])
    lamer = LameRRetriever(FakeRetriever(), llm, n_answers=1, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # __init__ does no I/O
    assert not lamer.augment("q").cached
    assert lamer.augment("q").cached
    assert len(llm.calls) == 1 and lamer.stats.cache_hits == 1
    # a new retriever over the same directory reuses the disk entries ...
    other = LameRRetriever(FakeRetriever(), FakeLLM(["zzz"]), n_answers=1, cache=tmp_path / "cache")
    assert other.augment("q").answers == ["a"]
    # ... but not for another model or other sampling arguments
    assert LameRRetriever(FakeRetriever(), FakeLLM(["b"], model="m2"), n_answers=1, cache=tmp_path / "cache").augment(
        "q"
    ).answers == ["b"]
    assert LameRRetriever(
        FakeRetriever(), FakeLLM(["c"]), n_answers=1, temperature=0.5, cache=tmp_path / "cache"
    ).augment("q").answers == ["c"]


def test_cache_false_disables_caching():
    llm = FakeLLM(["a"])
    lamer = LameRRetriever(FakeRetriever(), llm, n_answers=1, cache=False)
    lamer.augment("q")
    lamer.augment("q")
    assert len(llm.calls) == 2


def test_shared_cache_object():
    cache = LLMCache()
    llm = FakeLLM(["a"])
    LameRRetriever(FakeRetriever(), llm, n_answers=1, cache=cache).augment("q")
    LameRRetriever(FakeRetriever(name="x"), llm, FakeRetriever(name="y"), n_answers=1, cache=cache).augment("q")
    assert len(llm.calls) == 1 and len(cache) == 1


@pytest.mark.parametrize("error", [LLMError("server down"), LLMTimeoutError("too slow"), ConnectionRefusedError("no")])
def test_llm_failure_falls_back_with_warning(error, caplog):
    first = FakeRetriever()
    lamer = LameRRetriever(first, FakeLLM(error=error), n_candidates=5)
    with (
        caplog.at_level(logging.WARNING, logger="lens_rag.lamer"),
        pytest.warns(LLMFallbackWarning, match="original query"),
    ):
        hits = lamer.retrieve("q", top_k=3)
    assert [h.id for h in hits] == ["d0", "d1", "d2"]  # never a silent empty result
    assert "fell back to the original query" in caplog.text and str(error) in caplog.text
    assert lamer.stats.fallbacks == 1


def test_fallback_uses_second_stage_with_original_query():
    first, second = FakeRetriever(), FakeRetriever(name="hybrid")
    lamer = LameRRetriever(first, FakeLLM(error=LLMError("down")), second_stage=second)
    with pytest.warns(LLMFallbackWarning):
        hits = lamer.retrieve("q", top_k=4)
    assert second.queries == [("q", 4, None)] and len(hits) == 4


def test_all_empty_answers_fall_back():
    lamer = LameRRetriever(FakeRetriever(), FakeLLM(["", "  "]), n_answers=2)
    with pytest.warns(LLMFallbackWarning, match="empty"):
        aug = lamer.augment("q")
    assert aug.fell_back and aug.text == "q" and aug.answers == [] and "empty" in aug.reason


def test_failures_are_not_cached():
    llm = FakeLLM(error=LLMError("down"))
    lamer = LameRRetriever(FakeRetriever(), llm, n_answers=1)
    with pytest.warns(LLMFallbackWarning):
        lamer.augment("q")
    llm.error = None
    assert not lamer.augment("q").fell_back


async def test_async_matches_sync():
    sync = LameRRetriever(FakeRetriever(), FakeLLM(["a", "b"]), second_stage=FakeRetriever(name="s"), n_answers=2)
    asyn = LameRRetriever(FakeRetriever(), FakeLLM(["a", "b"]), second_stage=FakeRetriever(name="s"), n_answers=2)
    expected = sync.retrieve("q", top_k=3, filters={"k": 1})
    got = await asyn.retrieve_async("q", top_k=3, filters={"k": 1})
    assert [h.id for h in got] == [h.id for h in expected]
    assert asyn.second_stage.queries == sync.second_stage.queries == [("q a q b", 3, {"k": 1})]


async def test_async_fallback():
    lamer = LameRRetriever(FakeRetriever(), FakeLLM(error=LLMTimeoutError("slow")))
    with pytest.warns(LLMFallbackWarning):
        aug = await lamer.augment_async("q")
    assert aug.fell_back and "slow" in aug.reason


def test_domain_templates_and_aliases():
    llm = FakeLLM(["a"])
    LameRRetriever(FakeRetriever(), llm, n_answers=1, domain="scifact").augment("claim")
    assert llm.calls[0]["prompt"].startswith('Give a scientific claim "claim"')
    assert set(LAMER_TEMPLATES) == {"default", "scientific", "counter-argument", "finance"}


def test_custom_template_overrides_domain():
    llm = FakeLLM(["a"])
    LameRRetriever(FakeRetriever(), llm, n_answers=1, n_candidates=2, template="Q={query} C={candidates}").augment("x")
    assert (
        llm.calls[0]["prompt"] == "Q=x C=1. T0. passage number 0 about topic 0\n2. T1. passage number 1 about topic 1"
    )


def test_candidate_budget_truncates_prompt():
    docs = FakeRetriever().docs
    for d in docs:
        d.content = " ".join(["word"] * 400)
    llm = FakeLLM(["a"])
    LameRRetriever(FakeRetriever(docs), llm, n_answers=1, candidate_token_budget=200).augment("q")
    assert approx_token_count(llm.calls[0]["prompt"]) < 320


def test_construction_does_no_io_and_calls_nothing():
    first, llm = FakeRetriever(), FakeLLM()
    LameRRetriever(first, llm)
    assert first.queries == [] and llm.calls == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_answers": 0}, "n_answers must be an integer >= 1"),
        ({"n_candidates": -1}, "n_candidates must be an integer >= 0"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 1"),
        ({"domain": "legal"}, "domain is 'legal'; use one of default, scientific"),
        ({"template": "nothing"}, "template must contain"),
        ({"candidate_token_budget": 0}, "candidate_token_budget must be"),
    ],
)
def test_invalid_arguments_name_parameter_and_fix(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        LameRRetriever(FakeRetriever(), FakeLLM(), **kwargs)


def test_zero_candidates_and_zero_top_k():
    first = FakeRetriever()
    llm = FakeLLM(["a"])
    lamer = LameRRetriever(first, llm, n_answers=1, n_candidates=0)
    assert lamer.retrieve("q", top_k=0) == []
    assert "(none)" in llm.calls[0]["prompt"]
    assert first.queries == [("q a", 0, None)]


def test_implements_retriever_protocol():
    from lens_rag.retrieval import Retriever

    assert isinstance(LameRRetriever(FakeRetriever(), FakeLLM()), Retriever)


def test_title_is_not_repeated_when_content_starts_with_it():
    from lens_rag.documents import Document

    docs = [Document("a", "My Title\nbody text", {"title": "My Title"}), Document("b", "body", {"title": "T"})]
    llm = FakeLLM(["x"])
    LameRRetriever(FakeRetriever(docs), llm, n_answers=1).augment("q")
    assert "1. My Title body text\n2. T. body\n" in llm.calls[0]["prompt"]
