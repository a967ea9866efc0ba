from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from lens_rag import ingest
from lens_rag.errors import ConfigurationError, DatasetError
from lens_rag.ingest import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, chunk_text, load_source

pytestmark = pytest.mark.unit


def _sentences(start: int, count: int, words: int = 10) -> str:
    """`count` sentences of `words` distinct words each, numbered from `start`."""
    out = []
    for s in range(start, start + count):
        out.append(" ".join(f"s{s}w{w}" for w in range(words)) + ".")
    return " ".join(out)


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_public_api() -> None:
    assert set(ingest.__all__) == {
        "DEFAULT_CHUNK_SIZE",
        "DEFAULT_CHUNK_OVERLAP",
        "TEXT_SUFFIXES",
        "SkippedFile",
        "SourceReader",
        "SourceScan",
        "load_source",
        "scan_source",
        "chunk_text",
    }
    # tokens of the packaged tokenizer: the default encoders' 256-token window less [CLS] and [SEP]
    assert (DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP) == (254, 50)


# --- chunking ---------------------------------------------------------------------------------


def test_short_text_is_one_verbatim_chunk() -> None:
    assert chunk_text("  Hello   world.\n\nSecond  para.  ", 10, 2) == ["Hello   world.\n\nSecond  para."]
    assert chunk_text(" \n ", 10, 2) == []


def test_chunks_respect_size_and_sentence_boundaries() -> None:
    text = _sentences(0, 12)  # 120 words in 10-word sentences
    chunks = chunk_text(text, chunk_size=50, chunk_overlap=10)
    assert all(len(c.split()) <= 50 for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # never cut inside a sentence
    # every sentence is in some chunk, in order
    joined = " ".join(chunks)
    for s in range(12):
        assert f"s{s}w0" in joined


def test_overlap_repeats_trailing_whole_sentences() -> None:
    chunks = chunk_text(_sentences(0, 12), chunk_size=50, chunk_overlap=10)
    assert chunks[0].split()[-10:] == chunks[1].split()[:10]  # the last sentence of chunk 0 opens chunk 1
    assert chunks[1].startswith("s4w0")


def test_no_overlap_when_zero() -> None:
    chunks = chunk_text(_sentences(0, 12), chunk_size=50, chunk_overlap=0)
    assert [c.split()[0] for c in chunks] == ["s0w0", "s5w0", "s10w0"]


def test_prefers_paragraph_boundary_when_half_full() -> None:
    text = _sentences(0, 3) + "\n\n" + _sentences(3, 4)  # 30 words, then a 40-word paragraph
    chunks = chunk_text(text, chunk_size=50, chunk_overlap=0)
    assert chunks == [_sentences(0, 3), _sentences(3, 4)]


def test_overlong_sentence_is_cut_into_word_windows() -> None:
    text = " ".join(f"w{i}" for i in range(25))  # no punctuation at all
    chunks = chunk_text(text, chunk_size=10, chunk_overlap=0)
    assert [len(c.split()) for c in chunks] == [10, 10, 5]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1), (True, 0)])
def test_bad_chunk_parameters(size: int, overlap: int) -> None:
    with pytest.raises(ConfigurationError, match="chunk_"):
        chunk_text("x", size, overlap)


# --- folders ------------------------------------------------------------------------------------


def test_folder_recursive_sorted_with_stable_ids(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Bee text.", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("# Alpha title\n\nAlpha body.", encoding="utf-8")
    (tmp_path / "a.md").write_text("No heading here.", encoding="utf-8")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("hidden", encoding="utf-8")

    reader = load_source(tmp_path, progress=False)
    docs = list(reader)
    assert reader.kind == "folder"
    assert [d.id for d in docs] == ["a.md#0", "b.txt#0", "sub/a.md#0"]
    assert docs[2].content == "# Alpha title\n\nAlpha body."
    assert docs[2].meta == {"source_path": "sub/a.md", "source": "sub/a.md", "title": "Alpha title", "chunk": 0}
    assert docs[0].meta["title"] == "a"
    assert docs[1].meta["title"] == "b"
    assert reader.skipped == []
    assert [d.id for d in reader] == [d.id for d in docs]  # re-iterable, deterministic


def test_long_file_is_chunked(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text(_sentences(0, 12), encoding="utf-8")
    docs = list(load_source(tmp_path, chunk_size=50, chunk_overlap=10, tokenizer=None, progress=False))
    assert [d.id for d in docs] == ["long.txt#0", "long.txt#1", "long.txt#2"]
    assert [d.meta["chunk"] for d in docs] == [0, 1, 2]
    assert all(d.meta["source_path"] == "long.txt" == d.meta["source"] for d in docs)


def test_single_text_file(tmp_path: Path) -> None:
    file = tmp_path / "one.md"
    file.write_text("Just one.", encoding="utf-8")
    assert [d.id for d in load_source(file, progress=False)] == ["one.md#0"]


def test_non_utf8_file_is_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "good.txt").write_text("Fine text.", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    reader = load_source(tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="lens_rag.ingest"):
        docs = list(reader)
    assert [d.id for d in docs] == ["good.txt#0"]
    assert [(s.path.name, s.reason.split(" (")[0]) for s in reader.skipped] == [
        ("empty.md", "empty"),
        ("latin1.txt", "not valid UTF-8"),
    ]
    assert "latin1.txt" in caplog.text and "not valid UTF-8" in caplog.text


def test_all_files_skipped_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DatasetError, match=r"gave no documents.*bad\.txt"):
        list(load_source(tmp_path, progress=False))


def test_missing_and_empty_and_unsupported_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist.*folder of \.txt/\.md"):
        load_source(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"has no \.txt or \.md files"):
        load_source(tmp_path)
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(DatasetError, match=r"\.pdf file, which is not supported"):
        load_source(tmp_path / "x.pdf")


# --- JSONL ----------------------------------------------------------------------------------------


def test_jsonl_fields_title_and_meta(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"_id": "d1", "title": "Title One", "text": "Body one.", "year": 2020},
            {"id": 7, "content": "Body two."},
        ],
    )
    reader = load_source(path, progress=False)
    docs = list(reader)
    assert reader.kind == "jsonl"
    assert [d.id for d in docs] == ["d1", "7"]
    assert docs[0].content == "Title One\nBody one."
    assert docs[0].meta == {"year": 2020, "source_path": str(path), "title": "Title One", "chunk": 0}
    assert docs[1].content == "Body two."
    assert docs[1].meta["title"] == ""


def test_jsonl_chunk_suffix_only_when_split(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "docs.jsonl",
        [{"_id": "short", "text": "Short."}, {"_id": "long", "title": "T", "text": _sentences(0, 12)}],
    )
    docs = list(load_source(path, chunk_size=50, chunk_overlap=0, tokenizer=None, progress=False))
    assert [d.id for d in docs] == ["short", "long#0", "long#1", "long#2"]
    assert all(d.content.startswith("T\n") for d in docs[1:])  # the title heads every chunk


def test_jsonl_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": \n', encoding="utf-8")
    reader = load_source(path, progress=False)
    with pytest.raises(DatasetError, match=r"bad\.jsonl, line 3: not valid JSON"):
        list(reader)


def test_jsonl_missing_fields(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "noid.jsonl", [{"text": "x"}])
    with pytest.raises(DatasetError, match=r"line 1: the record has no '_id' or 'id'"):
        list(load_source(path, progress=False))
    path = _write_jsonl(tmp_path / "notext.jsonl", [{"_id": "a", "body": "x"}])
    with pytest.raises(DatasetError, match=r"no string 'text' or 'content'"):
        list(load_source(path, progress=False))


def test_empty_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.jsonl' is empty"):
        load_source(path)


# --- BEIR ------------------------------------------------------------------------------------------


def test_beir_folder_is_not_chunked_by_default(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "T", "text": _sentences(0, 30), "metadata": {}}])
    reader = load_source(tmp_path, progress=False)
    docs = list(reader)
    assert reader.kind == "beir"
    assert [d.id for d in docs] == ["d1"]
    assert docs[0].content == "T\n" + _sentences(0, 30)
    assert docs[0].meta["title"] == "T" and docs[0].meta["metadata"] == {}
    chunked = list(load_source(tmp_path, chunk=True, chunk_size=100, chunk_overlap=0, tokenizer=None, progress=False))
    # the title's word counts against every chunk: 9 ten-word sentences + "T" per chunk
    assert [d.id for d in chunked] == ["d1#0", "d1#1", "d1#2", "d1#3"]
    assert all(len(d.content.split()) <= 100 for d in chunked)


# --- metadata keys, bad records, scan ------------------------------------------------------------


def test_jsonl_keeps_the_records_own_source_field(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "docs.jsonl", [{"_id": "d1", "text": "Body.", "source": "pubmed", "year": 1}])
    (doc,) = list(load_source(path, progress=False))
    assert doc.meta["source"] == "pubmed"
    assert doc.meta["source_path"] == str(path)


def test_jsonl_own_chunk_and_source_path_fields_win_with_a_warning(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "docs.jsonl", [{"_id": "d1", "text": "Body.", "chunk": 7, "source_path": "orig.pdf"}]
    )
    reader = load_source(path, progress=False)
    (doc,) = list(reader)
    assert doc.meta["chunk"] == 7 and doc.meta["source_path"] == "orig.pdf"
    assert [w.line for w in reader.warnings] == [1, 1]
    assert "'chunk' field is kept" in reader.warnings[1].reason or "'chunk' field is kept" in reader.warnings[0].reason


def test_jsonl_lone_surrogates_are_replaced_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    # json.dumps writes lone surrogates as \ud800 escapes, which json.loads turns back into lone surrogates
    lines = [
        json.dumps({"_id": "a", "title": "T\ud800", "text": "bad \udc80 text", "tags": ["x\ud800"]}),
        json.dumps({"_id": "b", "text": "emoji \U0001f600 is a valid pair"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reader = load_source(path, progress=False)
    docs = list(reader)
    assert docs[0].content == "T\ufffd\nbad \ufffd text"
    assert docs[0].meta["tags"] == ["x\ufffd"] and docs[0].meta["title"] == "T\ufffd"
    assert docs[1].content == "emoji \U0001f600 is a valid pair"
    assert {w.line for w in reader.warnings} == {1}
    assert all("U+FFFD" in w.reason for w in reader.warnings)
    for doc in docs:
        doc.content.encode("utf-8")  # writable


def test_jsonl_lone_surrogate_in_id_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"_id": "a\ud800", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"s\.jsonl, line 1: the record's '_id' holds a lone surrogate"):
        list(load_source(path, progress=False))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"_id": "a", "text": "x", "score": NaN}', "NaN is not valid JSON"),
        ('{"_id": "a", "text": "x", "score": Infinity}', "Infinity is not valid JSON"),
        ('{"_id": 1.5, "text": "x"}', "'_id' is float '1.5'; ids must be strings or integers"),
        ('{"_id": true, "text": "x"}', "'_id' is bool"),
        ('{"_id": ["a"], "text": "x"}', "'_id' is list"),
        ('{"_id": "a", "text": 5}', "no string 'text'"),
        ('["a", "b"]', "expected a JSON object, got list"),
        ('{"_id": "a", "text": "x"', "not valid JSON"),
        ("[" * 100000 + "]" * 100000, "nested too deeply|not valid JSON"),
    ],
)
def test_jsonl_bad_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"_id": "ok", "text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"bad\.jsonl, line 2: .*({message})"):
        list(load_source(path, progress=False))


def test_jsonl_non_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"_id": "ok", "text": "fine"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"line 2: not valid UTF-8 \(byte 0xe9 at column 26\)"):
        list(load_source(path, progress=False))


def _bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.jsonl"
    lines = [
        '{"_id": "a", "text": "one"}',
        "not json",
        '{"_id": "b", "text": "two"}',
        '{"text": "no id"}',
        '{"_id": "a", "text": "again"}',
        '{"_id": 123, "text": "int id"}',
        '{"_id": "123", "text": "same id as a string"}',
        '{"_id": "e", "text": "  "}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_scan_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    path = _bad_file(tmp_path)
    scan = load_source(path, progress=False).scan()
    assert scan.kind == "jsonl" and not scan.ok
    assert scan.records == 5
    assert scan.error_count == 2
    assert [(e.line, e.reason.split(" (")[0]) for e in scan.errors] == [
        (2, "not valid JSON"),
        (4, "the record has no '_id' or 'id' field"),
    ]
    assert [s.line for s in scan.skipped] == [8]
    # repeated ids, including 123 and "123", which name the same document
    assert [(w.line, w.reason) for w in scan.warnings] == [
        (5, "id 'a' repeats line 1; the later record replaces the earlier one"),
        (7, "id '123' repeats line 6; the later record replaces the earlier one"),
    ]
    with pytest.raises(DatasetError, match=r"has 2 bad record\(s\): .*mixed\.jsonl:2: not valid JSON.*mixed\.jsonl:4"):
        scan.raise_for_errors()
    assert "5 record(s), 2 error(s)" in str(scan)


def test_scan_source_reads_without_a_tokenizer(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "ok.jsonl", [{"_id": str(i), "text": "x " * 1000} for i in range(3)])
    scan = ingest.scan_source(path)
    assert scan.ok and scan.records == 3
    scan.raise_for_errors()  # no error


def test_on_error_skip_loads_the_good_records(tmp_path: Path) -> None:
    reader = load_source(_bad_file(tmp_path), progress=False, on_error="skip")
    docs = list(reader)
    assert [d.id for d in docs] == ["a", "b", "a", "123", "123"]
    assert [(s.line, s.reason.split(" (")[0]) for s in reader.skipped] == [
        (2, "not valid JSON"),
        (4, "the record has no '_id' or 'id' field"),
        (8, "record 'e' has empty text"),
    ]
    with pytest.raises(ConfigurationError, match="on_error must be 'raise' or 'skip'"):
        load_source(_bad_file(tmp_path), on_error="ignore")  # type: ignore[arg-type]


def test_scan_folder(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Fine text.", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    scan = load_source(tmp_path, progress=False).scan()
    assert scan.ok and scan.records == 1
    assert sorted(s.path.name for s in scan.skipped) == ["empty.md", "latin1.txt"]
    (tmp_path / "good.txt").unlink()
    with pytest.raises(DatasetError, match="gives no documents"):
        load_source(tmp_path, progress=False).scan().raise_for_errors()


def test_non_utf8_file_name_gets_escaped_ids(tmp_path: Path) -> None:
    import os

    name = os.fsdecode(b"caf\xe9.txt")  # surrogate-escaped by Python, not valid Unicode
    try:
        (tmp_path / name).write_text("Some text.", encoding="utf-8")
    except (OSError, UnicodeEncodeError):
        pytest.skip("the file system refuses non-UTF-8 names")
    (doc,) = list(load_source(tmp_path, progress=False))
    assert doc.id == "caf\\xe9.txt#0" and doc.meta["source_path"] == "caf\\xe9.txt"
    doc.id.encode("utf-8")


# --- token chunking through load_source ----------------------------------------------------------


def test_default_chunks_fit_the_encoders_window(tmp_path: Path) -> None:
    from lens_rag.chunking import default_tokenizer

    tokenizer = default_tokenizer()
    assert tokenizer is not None, "the packaged SPLADE-tiny tokenizer is installed in dev environments"
    body = " ".join(
        f"Sentence {i} mentions immunohistochemistry, pharmacokinetics and CRISPR-Cas9 (p<0.05)." for i in range(120)
    )
    path = _write_jsonl(
        tmp_path / "long.jsonl", [{"_id": "d", "title": "A rather long title about things", "text": body}]
    )
    docs = list(load_source(path, progress=False))
    assert len(docs) > 3
    for doc in docs:
        assert len(tokenizer.offsets(doc.content)) <= DEFAULT_CHUNK_SIZE  # title included
        assert doc.content.split("\n", 1)[1] in body  # chunk text is original text
