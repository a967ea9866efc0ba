"""Load a source — a folder of text files, a JSONL file or a BEIR dataset — into `Document`s.

Three kinds of SOURCE are recognised by :func:`load_source`:

- **folder** of ``.txt``/``.md``/``.markdown`` files, searched recursively (hidden files and folders
  are ignored), read in sorted relative-path order so ids and order are deterministic. A single
  ``.txt``/``.md`` file is treated as a folder holding just that file. Long files are chunked.
  Ids are ``relative/path.md#0``, ``#1``, … (always suffixed, so a file's ids do not change when it
  grows past one chunk); ``meta`` holds ``source`` (the relative path), ``title`` (the first
  Markdown ``#`` heading, else the file name without suffix) and ``chunk`` (0-based index).
- **JSONL** file, one object per line: ``_id`` or ``id`` (required), ``title`` (optional), ``text``
  or ``content`` (required); every other field goes into ``meta``. Long records are chunked; the
  id gets a ``#i`` suffix only when a record is split into more than one chunk.
- **BEIR** folder (holds ``corpus.jsonl``, usually with ``queries.jsonl`` and ``qrels/``): read like
  JSONL but **not chunked by default**, because evaluation matches the corpus' own ids.

Content layout for records with a title: ``title + "\\n" + text`` (the title prefixes every chunk).
This is Pyserini's "flat" BEIR layout and BEIR's own ``title + " " + text`` for dense models — every
tokenizer here treats the newline as whitespace, so scores match theirs — while staying readable
when a passage is printed as a citation. The title is also kept in ``meta["title"]``.

Chunking (defaults: :data:`DEFAULT_CHUNK_SIZE` = 200 words, :data:`DEFAULT_CHUNK_OVERLAP` = 40
words). Words are whitespace-separated tokens. Text of at most ``chunk_size`` words is kept
verbatim as one chunk. Longer text is split into paragraphs (blank lines) and sentences, and whole
sentences are packed greedily up to ``chunk_size`` words; a chunk that is at least half full ends
early at a paragraph boundary rather than cut into a paragraph that would not fit. Each next chunk
starts with the trailing whole sentences of the previous one totalling at most ``chunk_overlap``
words. A single sentence longer than ``chunk_size`` words is cut into word windows. 200 words
(~260 BERT tokens) fits the 256–512-token windows of the small encoders and cross-encoders we ship
while keeping a passage one topic; 20 % overlap keeps a fact that straddles a boundary findable.

Files that are not valid UTF-8 (and empty files) in a folder are skipped with a warning and
recorded in :attr:`SourceReader.skipped` so a CLI can list them; in a JSONL file an undecodable or
malformed line is an error naming the file and line.

Usage::

    reader = load_source("notes/")
    documents = list(reader)          # streams; nothing is held in memory by the reader
    for skipped in reader.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}")
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError, DatasetError

__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_SIZE",
    "TEXT_SUFFIXES",
    "SkippedFile",
    "SourceReader",
    "chunk_text",
    "load_source",
]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 200
DEFAULT_CHUNK_OVERLAP = 40
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
SourceKind = Literal["folder", "jsonl", "beir"]

_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class SkippedFile:
    """A file (or JSONL line) that was not loaded, and why.

    :param path: the file.
    :param reason: a short human-readable reason, e.g. ``"not valid UTF-8 (byte 0xff at offset 3)"``.
    :param line: the 1-based line number, for a skipped JSONL record.
    """

    path: Path
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.reason}"


def _validate_chunking(chunk_size: int, chunk_overlap: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be a positive number of words, got {chunk_size!r}; e.g. 200")
    if isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int) or chunk_overlap < 0:
        raise ConfigurationError(f"chunk_overlap must be 0 or more words, got {chunk_overlap!r}; e.g. 40")
    if chunk_overlap >= chunk_size:
        raise ConfigurationError(
            f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size}); "
            "use e.g. a fifth of chunk_size"
        )


def _sentences(paragraph: str, chunk_size: int) -> list[str]:
    units: list[str] = []
    for sentence in _SENTENCE_SPLIT.split(paragraph.strip()):
        words = sentence.split()
        if not words:
            continue
        if len(words) <= chunk_size:
            units.append(" ".join(words))
        else:  # a "sentence" longer than a chunk (tables, code, no punctuation): cut into word windows
            units.extend(" ".join(words[i : i + chunk_size]) for i in range(0, len(words), chunk_size))
    return units


def chunk_text(
    text: str, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
) -> list[str]:
    """Split text into chunks of at most `chunk_size` words, preferring paragraph and sentence ends.

    See the module docstring for the rules. Whitespace-only text gives no chunks.

    :param text: the text to split.
    :param chunk_size: the most words in one chunk.
    :param chunk_overlap: the most words a chunk repeats from the end of the previous one.
    :returns: the chunks, in order; ``[text.strip()]`` when the text already fits.
    :raises ConfigurationError: if `chunk_size` < 1 or `chunk_overlap` is negative or ≥ `chunk_size`.
    """
    _validate_chunking(chunk_size, chunk_overlap)
    stripped = text.strip()
    if not stripped:
        return []
    if len(stripped.split()) <= chunk_size:
        return [stripped]

    # (sentence, paragraph index, word count)
    units: list[tuple[str, int, int]] = []
    for p_index, paragraph in enumerate(_PARAGRAPH_SPLIT.split(stripped)):
        units.extend((s, p_index, len(s.split())) for s in _sentences(paragraph, chunk_size))

    paragraph_words: dict[int, int] = {}
    for _, p_index, n in units:
        paragraph_words[p_index] = paragraph_words.get(p_index, 0) + n

    chunks: list[list[tuple[str, int, int]]] = []
    current: list[tuple[str, int, int]] = []
    words = 0
    fresh = 0  # units in `current` that are not overlap carried from the previous chunk
    i = 0
    while i < len(units):
        unit = units[i]
        starts_paragraph = bool(current) and unit[1] != current[-1][1]
        too_long = words + unit[2] > chunk_size
        # a unit that starts a paragraph is its paragraph's first, so the paragraph's total is what follows
        paragraph_break = starts_paragraph and words >= chunk_size / 2 and words + paragraph_words[unit[1]] > chunk_size
        if current and fresh and (too_long or paragraph_break):
            chunks.append(current)
            overlap: list[tuple[str, int, int]] = []
            overlap_words = 0
            for prev in reversed(current):
                if overlap_words + prev[2] > chunk_overlap:
                    break
                overlap.insert(0, prev)
                overlap_words += prev[2]
            if overlap_words + unit[2] > chunk_size:  # the overlap would not leave room for the next unit
                overlap, overlap_words = [], 0
            current, words, fresh = overlap, overlap_words, 0
            continue
        current.append(unit)
        words += unit[2]
        fresh += 1
        i += 1
    if fresh:
        chunks.append(current)

    out: list[str] = []
    for chunk in chunks:
        parts = [chunk[0][0]]
        for prev, unit in itertools.pairwise(chunk):
            parts.append(("\n\n" if unit[1] != prev[1] else " ") + unit[0])
        out.append("".join(parts))
    return out


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        match = _MD_HEADING.match(line)
        if match:
            return match.group(1)
    return None


class SourceReader:
    """An iterable over the `Document`s of one source; built by :func:`load_source`.

    Iterating reads the source afresh each time (streaming: nothing but the current file or line is
    held) and refills :attr:`skipped`.

    :param path: the source path.
    :param kind: ``"folder"``, ``"jsonl"`` or ``"beir"``.
    :param chunk: whether long texts are chunked.
    :param chunk_size: the most words per chunk.
    :param chunk_overlap: the most words a chunk repeats from the previous one.
    :param progress: show a progress bar while reading.
    """

    def __init__(
        self, path: Path, kind: SourceKind, *, chunk: bool, chunk_size: int, chunk_overlap: int, progress: bool
    ) -> None:
        self.path = path
        self.kind: SourceKind = kind
        self.chunk = chunk
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.progress = progress
        self.skipped: list[SkippedFile] = []
        self._files: list[Path] = _text_files(path) if kind == "folder" else []

    def __repr__(self) -> str:
        return f"SourceReader(path={str(self.path)!r}, kind={self.kind!r}, chunk={self.chunk})"

    @property
    def jsonl_path(self) -> Path:
        """The JSONL file read for ``"jsonl"`` and ``"beir"`` sources."""
        return self.path / "corpus.jsonl" if self.kind == "beir" else self.path

    def __iter__(self) -> Iterator[Document]:
        self.skipped = []
        count = 0
        inner = self._iter_folder() if self.kind == "folder" else self._iter_jsonl()
        for document in inner:
            count += 1
            yield document
        if count == 0:
            detail = "; ".join(str(s) for s in self.skipped[:5])
            raise DatasetError(
                f"source {str(self.path)!r} gave no documents"
                + (f" — every file was skipped ({detail})" if detail else "")
                + ". Add readable UTF-8 text to it, or pass another source."
            )

    def _split(self, text: str) -> list[str]:
        if not self.chunk:
            stripped = text.strip()
            return [stripped] if stripped else []
        return chunk_text(text, self.chunk_size, self.chunk_overlap)

    def _iter_folder(self) -> Iterator[Document]:
        root = self.path if self.path.is_dir() else self.path.parent
        for file in tqdm(self._files, desc=f"Reading {self.path.name}", unit="file", disable=not self.progress):
            relative = file.relative_to(root).as_posix()
            try:
                text = file.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError as e:
                self._skip(file, f"not valid UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})")
                continue
            except OSError as e:
                self._skip(file, f"could not be read ({e.strerror or e})")
                continue
            chunks = self._split(text)
            if not chunks:
                self._skip(file, "empty")
                continue
            title = (_markdown_title(text) if file.suffix.lower() != ".txt" else None) or file.stem
            for index, content in enumerate(chunks):
                yield Document(
                    id=f"{relative}#{index}",
                    content=content,
                    meta={"source": relative, "title": title, "chunk": index},
                )

    def _skip(self, path: Path, reason: str, line: int | None = None) -> None:
        skipped = SkippedFile(path, reason, line)
        logger.warning("Skipping %s", skipped)
        self.skipped.append(skipped)

    def _iter_jsonl(self) -> Iterator[Document]:
        path = self.jsonl_path
        source = str(path)
        with (
            path.open("rb") as handle,
            tqdm(
                total=path.stat().st_size,
                desc=f"Reading {path.name}",
                unit="B",
                unit_scale=True,
                disable=not self.progress,
            ) as bar,
        ):
            for line_no, raw in enumerate(handle, start=1):
                bar.update(len(raw))
                record = _parse_line(path, line_no, raw)
                if record is None:
                    continue
                doc_id, title, text, extra = _record_fields(path, line_no, record)
                chunks = self._split(text)
                if not chunks and not title:
                    self._skip(path, f"record {doc_id!r} has empty text", line_no)
                    continue
                chunks = chunks or [""]
                for index, body in enumerate(chunks):
                    content = f"{title}\n{body}" if title and body else (title or body)
                    meta: dict[str, Any] = {**extra, "source": source, "title": title, "chunk": index}
                    yield Document(id=doc_id if len(chunks) == 1 else f"{doc_id}#{index}", content=content, meta=meta)


def _parse_line(path: Path, line_no: int, raw: bytes) -> dict[str, Any] | None:
    try:
        line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"{path}, line {line_no}: not valid UTF-8 (byte 0x{e.object[e.start]:02x}); re-save the file as UTF-8"
        ) from e
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{path}, line {line_no}: not valid JSON ({e.msg} at column {e.colno}); "
            'each line must be one JSON object, e.g. {"_id": "d1", "text": "..."}'
        ) from e
    if not isinstance(record, dict):
        raise DatasetError(
            f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}; "
            'each line must be one JSON object, e.g. {"_id": "d1", "text": "..."}'
        )
    return record


def _record_fields(path: Path, line_no: int, record: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    id_key = "_id" if "_id" in record else "id" if "id" in record else None
    if id_key is None or record[id_key] is None or str(record[id_key]) == "":
        raise DatasetError(
            f"{path}, line {line_no}: the record has no '_id' or 'id' field (keys: {sorted(record)}); "
            "give every record a unique id"
        )
    text_key = "text" if "text" in record else "content" if "content" in record else None
    if text_key is None or not isinstance(record[text_key], str):
        raise DatasetError(
            f"{path}, line {line_no}: the record has no string 'text' or 'content' field (keys: {sorted(record)}); "
            "put the passage text in 'text'"
        )
    title = record.get("title")
    title = title.strip() if isinstance(title, str) else ""
    extra = {k: v for k, v in record.items() if k not in {id_key, text_key, "title"}}
    return str(record[id_key]), title, record[text_key], extra


def _text_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = [
        p
        for p in path.rglob("*")
        if p.suffix.lower() in TEXT_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(path).as_posix())


def _has_content(path: Path) -> bool:
    with path.open("rb") as handle:
        return any(raw.strip() for raw in handle)


def load_source(
    path: str | Path,
    *,
    chunk: bool | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    progress: bool = True,
) -> SourceReader:
    """Open a folder of text files, a JSONL file or a BEIR dataset folder as a stream of `Document`s.

    The path is checked now (missing, empty, unsupported → :class:`DatasetError`); documents are
    read when the returned reader is iterated. See the module docstring for ids, metadata, content
    layout and chunking.

    :param path: a folder of ``.txt``/``.md`` files, a single such file, a ``.jsonl`` file, or a BEIR
        folder holding ``corpus.jsonl``.
    :param chunk: chunk long texts; ``None`` (default) chunks folders and JSONL files but not BEIR
        corpora, whose original ids evaluation needs.
    :param chunk_size: the most words per chunk.
    :param chunk_overlap: the most words a chunk repeats from the end of the previous one.
    :param progress: show a progress bar while reading.
    :returns: a :class:`SourceReader`; iterate it for documents, read ``.skipped`` afterwards.
    :raises DatasetError: if the path is missing, unsupported, or holds no text files / no records.
    :raises ConfigurationError: if the chunking parameters cannot work.
    """
    _validate_chunking(chunk_size, chunk_overlap)
    source = Path(path)
    if not source.exists():
        raise DatasetError(
            f"source {str(source)!r} does not exist; pass a folder of .txt/.md files, a .jsonl file "
            "or a BEIR dataset folder (with corpus.jsonl)"
        )
    kind: SourceKind
    if source.is_dir():
        if (source / "corpus.jsonl").is_file():
            kind = "beir"
        else:
            kind = "folder"
            if not _text_files(source):
                raise DatasetError(
                    f"folder {str(source)!r} has no .txt or .md files (searched recursively, hidden ones ignored); "
                    "add some, or pass a .jsonl file or a BEIR folder (with corpus.jsonl)"
                )
    elif source.suffix.lower() == ".jsonl":
        kind = "jsonl"
    elif source.suffix.lower() in TEXT_SUFFIXES:
        kind = "folder"
    else:
        raise DatasetError(
            f"source {str(source)!r} is a {source.suffix or 'suffix-less'} file, which is not supported; "
            "pass a folder of .txt/.md files, a .txt/.md file, a .jsonl file or a BEIR dataset folder"
        )
    if kind in ("jsonl", "beir"):
        jsonl = source / "corpus.jsonl" if kind == "beir" else source
        if not _has_content(jsonl):
            raise DatasetError(
                f'{str(jsonl)!r} is empty; add one JSON object per line, e.g. {{"_id": "d1", "text": "..."}}'
            )
    if chunk is None:
        chunk = kind != "beir"
    logger.debug("Loading %s source %s (chunk=%s)", kind, source, chunk)
    return SourceReader(
        source, kind, chunk=chunk, chunk_size=chunk_size, chunk_overlap=chunk_overlap, progress=progress
    )
