"""Document expansion (doc2query, doc2query--): heuristic fallback, filtering, LLM cache, both stores' BM25."""

from __future__ import annotations

from typing import Any

import pytest

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError
from lens_rag.expansion import (
    EXPANSION_KEY,
    ExpansionReport,
    HeuristicQueryGenerator,
    LLMQueryGenerator,
    bm25_text,
    expand_documents,
    keep_self_retrieving,
)
from lens_rag.llm.base import LLMCache
from lens_rag.stores.elasticsearch import ElasticsearchStore
from lens_rag.stores.elasticsearch.bulk import document_source
from lens_rag.stores.elasticsearch.mappings import EXPANSION_FIELD
from lens_rag.stores.elasticsearch.queries import bm25_request, source_to_document
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit

TEXTS = {
    "aspirin": "Aspirin and fever\nAspirin lowers fever in adults. "
    "Acetylsalicylic acid inhibits cyclooxygenase enzymes.",
    "vitd": "Vitamin D and bone\nVitamin D deficiency is linked to bone loss. "
    "Supplements improve bone mineral density.",
    "sleep": "Sleep and memory\nSleep consolidates memory in the hippocampus. "
    "Slow wave sleep replays recent experience.",
}


def _docs() -> list[Document]:
    return [Document(id=k, content=v, meta={"title": v.split("\n")[0]}) for k, v in TEXTS.items()]


class FakeGenerator:
    """Scripted pseudo-queries per document id."""

    name = "fake"

    def __init__(self, queries: dict[str, list[str]]) -> None:
        self.queries = queries

    def generate(self, documents, *, progress: bool = False) -> list[list[str]]:
        return [list(self.queries.get(d.id, [])) for d in documents]


class CountingLLM:
    def __init__(self, answer: str = "Query: does aspirin reduce fever?") -> None:
        self.answer = answer
        self.calls = 0

    @property
    def model(self) -> str:
        return "counting-llm"

    def generate(self, prompt: Any, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]:
        self.calls += 1
        return [self.answer, '"' + self.answer.split(": ", 1)[-1] + '"', ""][:n]


def test_bm25_text_appends_only_string_expansions():
    assert bm25_text("body", {EXPANSION_KEY: "q1\nq2"}) == "body\nq1\nq2"
    assert bm25_text("body", {}) == "body"
    assert bm25_text("body", {EXPANSION_KEY: "  "}) == "body"
    assert bm25_text("body", {EXPANSION_KEY: None}) == "body"


def test_heuristic_gives_title_salient_sentence_and_keyphrases():
    other = Document(id="x", content="Bone and adults\nBone loss in adults is common. Adults lose bone with age.")
    docs = [*_docs(), other]
    out = HeuristicQueryGenerator(sentences=1, keyphrases=3).generate(docs)
    title, sentence, keyphrases = out[0]
    assert title == "Aspirin and fever"
    # "Acetylsalicylic acid inhibits cyclooxygenase enzymes." holds only rare terms; the first sentence shares
    # "adults" with another passage, so the second is the salient one
    assert sentence == "Acetylsalicylic acid inhibits cyclooxygenase enzymes."
    assert len(keyphrases.split()) == 3 and "aspirin" in keyphrases.split()
    assert out == HeuristicQueryGenerator(sentences=1, keyphrases=3).generate(docs)  # deterministic
    assert HeuristicQueryGenerator(title=False, untitled_sentences=0).generate(docs) == [[]] * len(docs)
    assert HeuristicQueryGenerator().generate(docs)[0] == ["Aspirin and fever"]  # default: the title alone
    untitled = [Document(id=d.id, content=d.content.split("\n")[1]) for d in docs]
    assert HeuristicQueryGenerator().generate(untitled)[0] == ["Acetylsalicylic acid inhibits cyclooxygenase enzymes."]
    with pytest.raises(ConfigurationError, match="sentences must be an integer >= 0"):
        HeuristicQueryGenerator(sentences=-1)


def test_doc2query_minus_keeps_only_self_retrieving_queries():
    docs = _docs()
    generator = FakeGenerator(
        {
            "aspirin": ["cyclooxygenase inhibition", "vitamin d bone density"],  # second retrieves another passage
            "sleep": ["hippocampus memory", "unrelated gibberish words"],  # second matches nothing
        }
    )
    report = ExpansionReport()
    out = expand_documents(docs, mode="doc2query--", generator=generator, filter_top_k=1, report=report)
    assert out[0].meta[EXPANSION_KEY] == "cyclooxygenase inhibition"
    assert EXPANSION_KEY not in out[1].meta  # nothing generated, nothing kept
    assert out[2].meta[EXPANSION_KEY] == "hippocampus memory"
    assert (report.generated, report.kept, report.expanded) == (4, 2, 2)
    kept = expand_documents(docs, mode="doc2query", generator=generator)
    assert kept[0].meta[EXPANSION_KEY] == "cyclooxygenase inhibition\nvitamin d bone density"
    # content, ids and the original metadata are untouched, and the inputs are not mutated
    assert [d.content for d in out] == [d.content for d in docs] and EXPANSION_KEY not in docs[0].meta
    assert out[0].meta["title"] == "Aspirin and fever"


def test_filter_rank_cutoff_and_errors():
    docs = _docs()
    # "bone" retrieves vitd: kept for vitd, dropped for aspirin (which it does not match at all)
    assert keep_self_retrieving(docs, [["fever", "bone"], ["bone"], []], top_k=1) == [["fever"], ["bone"], []]
    # "memory" matches only sleep; with three passages any matching query is within the top 3
    assert keep_self_retrieving(docs, [["sleep memory"], [], ["sleep memory"]], top_k=3) == [[], [], ["sleep memory"]]
    with pytest.raises(ConfigurationError, match="filter_top_k must be an integer >= 1"):
        keep_self_retrieving(docs, [[], [], []], top_k=0)
    with pytest.raises(ConfigurationError, match="3 documents"):
        keep_self_retrieving(docs, [[]], top_k=1)
    with pytest.raises(ConfigurationError, match="expand mode must be one of"):
        expand_documents(docs, mode="doc2query++")
    assert expand_documents(docs, mode="none") == docs


def test_sample_expands_a_seeded_subset():
    docs = _docs()
    a = expand_documents(docs, mode="doc2query", sample=1, seed=3)
    b = expand_documents(docs, mode="doc2query", sample=1, seed=3)
    assert [EXPANSION_KEY in d.meta for d in a] == [EXPANSION_KEY in d.meta for d in b]
    assert sum(EXPANSION_KEY in d.meta for d in a) == 1


def test_llm_generator_cleans_outputs_and_caches_on_disk(tmp_path):
    llm = CountingLLM()
    gen = LLMQueryGenerator(llm, n=3, cache=LLMCache(tmp_path))  # type: ignore[arg-type]
    first = gen.generate(_docs()[:2])
    assert first == [["does aspirin reduce fever?"]] * 2  # label and quotes stripped, duplicates and blanks dropped
    assert llm.calls == 2 and gen.generated == 2
    again = LLMQueryGenerator(llm, n=3, cache=LLMCache(tmp_path), workers=2)  # type: ignore[arg-type]
    assert again.generate(_docs()[:2]) == first
    assert llm.calls == 2 and again.generated == 0  # a re-run (or a resumed run) is served from disk
    other_prompt = LLMQueryGenerator(llm, n=3, cache=LLMCache(tmp_path), prompt="Q for: {passage}")  # type: ignore[arg-type]
    other_prompt.generate(_docs()[:1])
    assert llm.calls == 3  # the prompt is part of the key
    with pytest.raises(ConfigurationError, match=r"'\{passage\}'"):
        LLMQueryGenerator(llm, prompt="no field")  # type: ignore[arg-type]


def test_embedded_store_bm25_sees_the_expansion_but_content_is_unchanged(tmp_path):
    docs = expand_documents(_docs(), mode="doc2query", generator=FakeGenerator({"sleep": ["nocturnal rest"]}))
    store = EmbeddedStore(tmp_path / "store", progress=False)
    store.write_documents(docs)
    hits = store.search_bm25("nocturnal", top_k=3)
    assert [h.id for h in hits] == ["sleep"]
    assert hits[0].document.content == TEXTS["sleep"]
    assert hits[0].document.meta[EXPANSION_KEY] == "nocturnal rest"
    store.close()
    reopened = EmbeddedStore(tmp_path / "store", progress=False)  # persisted (and the BM25 cache reused)
    assert [h.id for h in reopened.search_bm25("nocturnal", top_k=3)] == ["sleep"]
    reopened.write_documents([Document(id="sleep", content=TEXTS["sleep"])])  # rewritten without expansion
    assert reopened.search_bm25("nocturnal", top_k=3) == []
    reopened.close()


def test_elasticsearch_source_mapping_and_query():
    doc = Document(id="1", content="body", meta={"title": "t", EXPANSION_KEY: "q one\nq two"})
    source = document_source(doc)
    assert source[EXPANSION_FIELD] == "q one\nq two" and source["meta"] == {"title": "t"}  # a text field, not meta
    assert source_to_document("1", source) == doc  # read back where it was written
    assert document_source(Document(id="2", content="body", meta={"a": 1})) == {"content": "body", "meta": {"a": 1}}
    assert bm25_request("fever", 5)["query"] == {"match": {"content": {"query": "fever"}}}  # unchanged without it
    body = bm25_request("fever", 5, {"lang": "en"}, expansion_field=EXPANSION_FIELD)
    assert body["query"]["bool"]["must"] == [
        {"combined_fields": {"query": "fever", "fields": ["content", EXPANSION_FIELD]}}
    ]
    assert EXPANSION_FIELD == EXPANSION_KEY


def test_elasticsearch_store_maps_the_field_when_expansions_arrive():
    store = ElasticsearchStore(url="http://127.0.0.1:9", index="exp", server_version="8.15.0")
    plain = {"1": Document(id="1", content="x")}
    expanded = {"2": Document(id="2", content="x", meta={EXPANSION_KEY: "q"})}
    assert store._expansion_mapping(plain) is None
    assert store._expansion_mapping(expanded) == {
        "index": "exp",
        "properties": {EXPANSION_FIELD: {"type": "text", "analyzer": store.analyzer}},
    }
    assert store._bm25_body("q", 3, None)["query"] == {"match": {"content": {"query": "q"}}}
    store._learn_mapping({"properties": {"content": {"type": "text"}, EXPANSION_FIELD: {"type": "text"}}})
    assert store._expansion_mapping(expanded) is None  # already mapped
    assert "combined_fields" in store._bm25_body("q", 3, None)["query"]


def test_cli_index_expand_heuristic(tmp_path, capsys):
    import json

    from lens_rag.cli import main

    src = tmp_path / "docs.jsonl"
    src.write_text(
        "\n".join(json.dumps({"id": k, "title": v.split("\n")[0], "text": v.split("\n")[1]}) for k, v in TEXTS.items())
    )
    store = tmp_path / "store"
    args = ["index", str(src), "--store", str(store), "--no-sparse", "--no-dense", "--no-progress"]
    assert main([*args, "--expand", "doc2query--", "--expansion-source", "heuristic"]) == 0
    assert "doc2query-- (heuristic)" in capsys.readouterr().err
    opened = EmbeddedStore(store, progress=False)
    docs = {d.id: d for d in opened.filter_documents()}
    assert set(docs) == set(TEXTS) and all(EXPANSION_KEY in d.meta for d in docs.values())
    assert all(d.content.startswith(d.meta["title"]) for d in docs.values())  # content as ingest lays it out
    opened.close()
    assert main([*args, "--expand", "none"]) == 0  # indexing again without expansion drops it
    opened = EmbeddedStore(store, progress=False)
    assert not any(EXPANSION_KEY in d.meta for d in opened.filter_documents())
    opened.close()
    assert main([*args, "--expand", "doc2query", "--expansion-sample", "1", "--seed", "5"]) == 0
    opened = EmbeddedStore(store, progress=False)
    assert sum(EXPANSION_KEY in d.meta for d in opened.filter_documents()) == 1
    opened.close()
