from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from lens_rag.chunking import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    Chunker,
    HFTokenizer,
    WordTokenizer,
    chunk_text,
    default_tokenizer,
    load_tokenizer,
)
from lens_rag.errors import ConfigurationError, ModelLoadError

pytestmark = pytest.mark.unit


def prose(paragraphs: int) -> str:
    """Distinct paragraphs of three sentences (so every chunk occurs once in the text)."""
    return "".join(
        f"Vitamin C (ascorbic acid) is micronutrient number {i}. Deficiency {i} causes scurvy, first described "
        f"in sailors on long voyage {i}. Citrus fruit prevents it; James Lind's trial {i} showed as much.\n\n"
        for i in range(paragraphs)
    )


@pytest.fixture(scope="module")
def tokenizer() -> HFTokenizer:
    tok = default_tokenizer()
    assert tok is not None
    return tok


def _covered(text: str, chunks: list[str], tokenizer: HFTokenizer) -> None:
    """Every token of `text` lies inside some chunk, chunks are slices in order."""
    spans = []
    for chunk in chunks:
        assert text.count(chunk) == 1
        start = text.index(chunk)
        spans.append((start, start + len(chunk)))
    assert spans == sorted(spans)
    for s, e in tokenizer.offsets(text):
        assert any(a <= s and e <= b for a, b in spans), text[s:e]


def test_defaults_fit_the_256_token_window(tokenizer: HFTokenizer) -> None:
    chunker = Chunker()
    assert tokenizer.num_special_tokens == 2
    assert (chunker.chunk_size, chunker.chunk_overlap) == (DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP) == (254, 50)
    text = prose(40)
    chunks = chunker.split(text)
    assert len(chunks) > 5
    assert all(chunker.count(c) <= 254 for c in chunks)
    assert max(chunker.count(c) for c in chunks) > 200  # chunks are filled, not tiny
    _covered(text, chunks, tokenizer)
    assert all(c.rstrip().endswith(".") for c in chunks)  # cut between sentences


def test_overlap_is_whole_trailing_sentences_within_the_token_budget(tokenizer: HFTokenizer) -> None:
    chunker = Chunker(tokenizer, chunk_size=60, chunk_overlap=25)
    chunks = chunker.split(prose(6))
    for a, b in itertools.pairwise(chunks):
        shared = next((k for k in range(len(b), 0, -1) if a.endswith(b[:k])), 0)
        assert 0 < chunker.count(b[:shared]) <= 25, (a, b)


def test_reserved_tokens_shorten_chunks(tokenizer: HFTokenizer) -> None:
    chunker = Chunker(tokenizer, chunk_size=80, chunk_overlap=0)
    chunks = chunker.split(prose(10), reserved=30)
    assert all(chunker.count(c) <= 50 for c in chunks)
    # never more than half the budget is reserved
    assert all(chunker.count(c) <= 40 for c in chunker.split(prose(10), reserved=1000))


def test_overlong_sentence_is_cut_at_whitespace_with_overlap(tokenizer: HFTokenizer) -> None:
    text = " ".join(f"word{i}" for i in range(400))  # no sentence ends; "word12" is 3 tokens
    chunker = Chunker(tokenizer, chunk_size=50, chunk_overlap=10)
    chunks = chunker.split(text)
    assert all(chunker.count(c) <= 50 for c in chunks)
    assert all(re.fullmatch(r"word\d+( word\d+)*", c) for c in chunks)  # whole words only
    assert all(set(a.split()) & set(b.split()) for a, b in itertools.pairwise(chunks))  # windows overlap
    _covered(text, chunks, tokenizer)


def test_a_word_longer_than_a_chunk_is_hard_cut_and_still_fits(tokenizer: HFTokenizer) -> None:
    import random

    rng = random.Random(0)
    # words of 99 random letters (BERT turns longer words into one [UNK]): dozens of word pieces each
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(99)) for _ in range(5)]
    text = "Before. " + " ".join(words) + " after."
    chunker = Chunker(tokenizer, chunk_size=16, chunk_overlap=4)
    assert chunker.count(words[0]) > 16
    chunks = chunker.split(text)
    assert len(chunks) > 10
    assert all(chunker.count(c) <= 16 for c in chunks)
    _covered(text, chunks, tokenizer)


def test_short_and_empty_text() -> None:
    chunker = Chunker(None, chunk_size=10, chunk_overlap=2)
    assert chunker.split("  Hello   world.\n\nSecond  para.  ") == ["Hello   world.\n\nSecond  para."]
    assert chunker.split(" \n ") == []
    assert Chunker().split("\u200b") == ["\u200b"]  # no tokens but not blank: kept whole


def test_word_fallback_defaults_and_chunk_text() -> None:
    chunker = Chunker(None)
    assert isinstance(chunker.tokenizer, WordTokenizer) and chunker.unit == "words"
    assert (chunker.chunk_size, chunker.chunk_overlap) == (150, 30)
    text = "one two three. four five six. seven eight nine."
    assert chunk_text(text, 6, 3) == ["one two three. four five six.", "four five six. seven eight nine."]
    # in tokens the full stops count too: "one two three." is 4 tokens
    assert chunk_text(text, 8, 4, tokenizer="default") == [
        "one two three. four five six.",
        "four five six. seven eight nine.",
    ]


def test_chunk_text_keeps_original_whitespace() -> None:
    text = "Line one\nstill one.  Two   spaces.\n\nPara two."
    assert chunk_text(text, 4, 0) == ["Line one\nstill one.", "Two   spaces.\n\nPara two."]


def test_default_overlap_shrinks_with_a_small_chunk_size() -> None:
    assert Chunker(None, chunk_size=20).chunk_overlap == 4


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1), (True, 0), (10.0, 0)])
def test_bad_sizes(size: int, overlap: int) -> None:
    with pytest.raises(ConfigurationError, match="chunk_"):
        Chunker(None, size, overlap)


def test_tokenizer_arguments(tmp_path: Path, tokenizer: HFTokenizer) -> None:
    assert Chunker(tokenizer).tokenizer is tokenizer
    assert load_tokenizer("all-MiniLM-L6-v2").offsets("Hello, world") == tokenizer.offsets("Hello, world")
    with pytest.raises(ConfigurationError, match=r"\*fast\* tokenizer"):
        Chunker(object())
    with pytest.raises(ModelLoadError, match="could not load a tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_wrapping_does_not_change_the_callers_tokenizer() -> None:
    from tokenizers import Tokenizer

    from lens_rag.models import splade_tiny_path

    raw = Tokenizer.from_file(str(splade_tiny_path() / "tokenizer.json"))
    before = raw.truncation
    wrapped = HFTokenizer(raw)
    assert raw.truncation == before
    assert len(wrapped.offsets("word " * 1000)) == 1000  # the file's truncation is off in the copy
