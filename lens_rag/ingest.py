"""Load a source — a folder of text files, a JSONL file or a BEIR dataset — into `Document`s.

Three kinds of SOURCE are recognised by :func:`load_source`:

- **folder** of ``.txt``/``.md``/``.markdown`` files, searched recursively (hidden files and folders
  are ignored), read in sorted relative-path order so ids and order are deterministic. A single
  ``.txt``/``.md`` file is treated as a folder holding just that file. Long files are chunked.
  Ids are ``relative/path.md#0``, ``#1``, … (always suffixed, so a file's ids do not change when it
  grows past one chunk); ``meta`` holds ``source_path`` and ``source`` (both the relative path;
  ``source`` follows LangChain's convention), ``title`` (the first Markdown ``#`` heading, else the
  file name without suffix) and ``chunk`` (0-based index). A file name that is not valid UTF-8 is
  written with ``\\xNN`` escapes in ids and metadata.
- **JSONL** file, one object per line: ``_id`` or ``id`` (required, a string or an integer),
  ``title`` (optional), ``text`` or ``content`` (required); every other field goes into ``meta``
  unchanged — a record's own ``source`` field is kept as it is. lens-rag adds ``source_path`` (the
  JSONL file as given), ``title`` and ``chunk``; where a record already has a ``source_path`` or
  ``chunk`` field, the record's value is kept and a warning says so. Long records are chunked; the
  id gets a ``#i`` suffix only when a record is split into more than one chunk.
- **BEIR** folder (holds ``corpus.jsonl``, usually with ``queries.jsonl`` and ``qrels/``): read like
  JSONL but **not chunked by default**, because evaluation matches the corpus' own ids.

Content layout for records with a title: ``title + "\\n" + text`` (the title prefixes every chunk,
and its tokens count against the chunk size). This is Pyserini's "flat" BEIR layout and BEIR's own
``title + " " + text`` for dense models — every tokenizer here treats the newline as whitespace, so
scores match theirs — while staying readable when a passage is printed as a citation. The title is
also kept in ``meta["title"]``.

Chunking is by the encoders' tokens (see :mod:`lens_rag.chunking`): by default the packaged
SPLADE-tiny tokenizer with chunks of :data:`DEFAULT_CHUNK_SIZE` = 254 tokens (the 256-token window of
both default encoders less their two special tokens) and :data:`DEFAULT_CHUNK_OVERLAP` = 50 tokens;
``tokenizer=None`` chunks by words. Chunk text is a slice of the original text.

Bad input: files that are not valid UTF-8 (and empty files) in a folder are skipped with a warning
and recorded in :attr:`SourceReader.skipped`. In a JSONL file, a line that is not UTF-8, not a JSON
object, uses ``NaN``/``Infinity``, or lacks an id or text is an error naming the file and line
(``on_error="skip"`` records it in ``skipped`` and goes on). Lone surrogates (``"\\ud800"`` escapes,
not valid Unicode) in text, title or metadata are replaced by U+FFFD with a warning; in an id they
are an error. :meth:`SourceReader.scan` reads the whole source without chunking — cheaply, before
any model loads — and returns every problem with its line number, so a caller can refuse a bad
source before writing anything.

Usage::

    reader = load_source("notes/")
    scan = reader.scan()              # every bad line/file up front
    scan.raise_for_errors()           # DatasetError listing them, if any
    documents = list(reader)          # streams; nothing is held in memory by the reader
    for skipped in reader.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}")
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from lens_rag.chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, Chunker, chunk_text, validate_chunking
from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError, DatasetError

__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_SIZE",
    "TEXT_SUFFIXES",
    "SkippedFile",
    "SourceReader",
    "SourceScan",
    "chunk_text",
    "load_source",
    "scan_source",
]

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
SourceKind = Literal["folder", "jsonl", "beir"]
OnError = Literal["raise", "skip"]
#: metadata keys lens-rag adds to every document (besides ``title``)
PATH_KEY = "source_path"
CHUNK_KEY = "chunk"

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
# a JSON \u escape of a UTF-16 surrogate (paired or not): only such lines need the slower check
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_LISTED = 1000  # problems kept in a SourceScan (all are counted)


@dataclass(frozen=True)
class SkippedFile:
    """A file (or JSONL line) that was not loaded, or was loaded with a change, and why.

    :param path: the file.
    :param reason: a short human-readable reason, e.g. ``"not valid UTF-8 (byte 0xff at offset 3)"``.
    :param line: the 1-based line number, for a JSONL record.
    """

    path: Path
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.reason}"


@dataclass
class SourceScan:
    """What :meth:`SourceReader.scan` found, read without chunking or models.

    :param path: the source.
    :param kind: ``"folder"``, ``"jsonl"`` or ``"beir"``.
    :param records: files or JSONL records that will give documents.
    :param errors: lines that stop loading (skipped instead with ``on_error="skip"``); the first 1000.
    :param skipped: files or records that loading skips anyway (not UTF-8, empty).
    :param warnings: records loaded with a change or a risk (lone surrogates replaced, a repeated id that
        replaces an earlier record, a record field kept instead of lens-rag's).
    :param error_count: how many errors there are in all.
    """

    path: Path
    kind: SourceKind
    records: int = 0
    errors: list[SkippedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[SkippedFile] = field(default_factory=list)
    error_count: int = 0

    @property
    def ok(self) -> bool:
        """No errors and at least one record."""
        return self.error_count == 0 and self.records > 0

    def raise_for_errors(self) -> None:
        """:raises DatasetError: listing up to 10 errors with their lines, or saying the source gives no documents."""
        if self.error_count:
            shown = "; ".join(str(e) for e in self.errors[:10])
            more = f" (and {self.error_count - 10} more)" if self.error_count > 10 else ""
            raise DatasetError(
                f"source {str(self.path)!r} has {self.error_count} bad record(s): {shown}{more}. "
                "Fix them (nothing was loaded), or skip them with on_error='skip'."
            )
        if self.records == 0:
            detail = "; ".join(str(s) for s in self.skipped[:5])
            raise DatasetError(
                f"source {str(self.path)!r} gives no documents"
                + (f" — every file or record is skipped ({detail})" if detail else "")
                + ". Add readable UTF-8 text to it, or pass another source."
            )

    def __str__(self) -> str:
        return (
            f"{self.kind} source {self.path}: {self.records} record(s), {self.error_count} error(s), "
            f"{len(self.skipped)} skipped, {len(self.warnings)} warning(s)"
        )


class _LineError(Exception):
    """A JSONL line that cannot be loaded; the message is the reason (without file and line)."""


class SourceReader:
    """An iterable over the `Document`s of one source; built by :func:`load_source`.

    Iterating reads the source afresh each time (streaming: nothing but the current file or line is
    held) and refills :attr:`skipped` and :attr:`warnings`.

    :param path: the source path.
    :param kind: ``"folder"``, ``"jsonl"`` or ``"beir"``.
    :param chunker: splits long texts; `None` keeps every text whole.
    :param progress: show a progress bar while reading.
    :param on_error: ``"raise"`` (a bad JSONL line raises :class:`DatasetError`) or ``"skip"`` (it is
        recorded in :attr:`skipped` and loading goes on).
    """

    def __init__(
        self, path: Path, kind: SourceKind, *, chunker: Chunker | None, progress: bool, on_error: OnError = "raise"
    ) -> None:
        self.path = path
        self.kind: SourceKind = kind
        self.chunker = chunker
        self.progress = progress
        self.on_error: OnError = on_error
        self.skipped: list[SkippedFile] = []
        self.warnings: list[SkippedFile] = []
        self._files: list[Path] = _text_files(path) if kind == "folder" else []

    def __repr__(self) -> str:
        return f"SourceReader(path={str(self.path)!r}, kind={self.kind!r}, chunker={self.chunker!r})"

    @property
    def chunk(self) -> bool:
        """Whether long texts are chunked."""
        return self.chunker is not None

    @property
    def jsonl_path(self) -> Path:
        """The JSONL file read for ``"jsonl"`` and ``"beir"`` sources."""
        return self.path / "corpus.jsonl" if self.kind == "beir" else self.path

    # ------------------------------------------------------------------------------------ reading
    def __iter__(self) -> Iterator[Document]:
        self.skipped = []
        self.warnings = []
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

    def scan(self) -> SourceScan:
        """Read the whole source without chunking, encoding or writing, and report every problem.

        Costs one pass of reading and JSON parsing (SciFact's 5,183 records: well under a second), so
        a caller can check a source before it loads models or writes a store.
        """
        result = SourceScan(self.path, self.kind)
        if self.kind == "folder":
            for file in self._files:
                outcome = _read_text_file(file)
                if isinstance(outcome, str) and outcome.strip():
                    result.records += 1
                else:
                    result.skipped.append(SkippedFile(file, outcome.reason if isinstance(outcome, _Skip) else "empty"))
            return result
        path = self.jsonl_path
        seen: dict[str, int] = {}
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    parsed = _parse_record(raw, line_no)
                except _LineError as e:
                    result.error_count += 1
                    if len(result.errors) < _MAX_LISTED:
                        result.errors.append(SkippedFile(path, str(e), line_no))
                    continue
                if parsed is None:
                    continue
                doc_id, title, text, _extra, notes = parsed
                for note in notes:
                    _append_capped(result.warnings, SkippedFile(path, note, line_no))
                if not text.strip() and not title:
                    result.skipped.append(SkippedFile(path, f"record {doc_id!r} has empty text", line_no))
                    continue
                result.records += 1
                if doc_id in seen:
                    _append_capped(
                        result.warnings,
                        SkippedFile(
                            path,
                            f"id {doc_id!r} repeats line {seen[doc_id]}; the later record replaces the earlier one",
                            line_no,
                        ),
                    )
                else:
                    seen[doc_id] = line_no
        return result

    def _split(self, text: str, title: str = "") -> list[str]:
        if self.chunker is None:
            stripped = text.strip()
            return [stripped] if stripped else []
        reserved = self.chunker.count(title) if title else 0
        return self.chunker.split(text, reserved=reserved)

    def _iter_folder(self) -> Iterator[Document]:
        root = self.path if self.path.is_dir() else self.path.parent
        for file in tqdm(self._files, desc=f"Reading {self.path.name}", unit="file", disable=not self.progress):
            relative = _printable_path(file.relative_to(root).as_posix())
            outcome = _read_text_file(file)
            if isinstance(outcome, _Skip):
                self._skip(file, outcome.reason)
                continue
            chunks = self._split(outcome)
            if not chunks:
                self._skip(file, "empty")
                continue
            title = (_markdown_title(outcome) if file.suffix.lower() != ".txt" else None) or _printable_path(file.stem)
            for index, content in enumerate(chunks):
                yield Document(
                    id=f"{relative}#{index}",
                    content=content,
                    meta={PATH_KEY: relative, "source": relative, "title": title, CHUNK_KEY: index},
                )

    def _skip(self, path: Path, reason: str, line: int | None = None) -> None:
        skipped = SkippedFile(path, reason, line)
        logger.warning("Skipping %s", skipped)
        self.skipped.append(skipped)

    def _warn(self, path: Path, reason: str, line: int | None = None) -> None:
        warning = SkippedFile(path, reason, line)
        logger.warning("%s", warning)
        _append_capped(self.warnings, warning)

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
                try:
                    parsed = _parse_record(raw, line_no)
                except _LineError as e:
                    if self.on_error == "raise":
                        raise DatasetError(f"{path}, line {line_no}: {e}") from e
                    self._skip(path, str(e), line_no)
                    continue
                if parsed is None:
                    continue
                doc_id, title, text, extra, notes = parsed
                for note in notes:
                    self._warn(path, note, line_no)
                chunks = self._split(text, title)
                if not chunks and not title:
                    self._skip(path, f"record {doc_id!r} has empty text", line_no)
                    continue
                chunks = chunks or [""]
                for index, body in enumerate(chunks):
                    content = f"{title}\n{body}" if title and body else (title or body)
                    meta: dict[str, Any] = {PATH_KEY: source, "title": title, CHUNK_KEY: index, **extra}
                    yield Document(id=doc_id if len(chunks) == 1 else f"{doc_id}#{index}", content=content, meta=meta)


@dataclass(frozen=True)
class _Skip:
    reason: str


def _read_text_file(file: Path) -> str | _Skip:
    try:
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return _Skip(f"not valid UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}); re-save it as UTF-8")
    except OSError as e:
        return _Skip(f"could not be read ({e.strerror or e})")


def _printable_path(name: str) -> str:
    """A file name that was not valid UTF-8 (surrogate-escaped by the OS layer) with ``\\xNN`` escapes instead."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _append_capped(items: list[SkippedFile], item: SkippedFile) -> None:
    if len(items) < _MAX_LISTED:
        items.append(item)


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        match = _MD_HEADING.match(line)
        if match:
            return match.group(1)
    return None


def _reject_constant(name: str) -> Any:
    raise _LineError(f"{name} is not valid JSON (JSON has no NaN or Infinity); write null or a number instead")


def _parse_line(path: Path, line_no: int, raw: bytes) -> dict[str, Any] | None:
    """One JSONL line as a JSON object, `None` for a blank line (used for BEIR queries too).

    :raises DatasetError: naming the file and line, if the line is not UTF-8, not JSON, or not an object.
    """
    try:
        return _parse_object(raw, line_no)
    except _LineError as e:
        raise DatasetError(f"{path}, line {line_no}: {e}") from e


def _parse_object(raw: bytes, line_no: int) -> dict[str, Any] | None:
    try:
        line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise _LineError(
            f"not valid UTF-8 (byte 0x{e.object[e.start]:02x} at column {e.start + 1}); re-save the file as UTF-8"
        ) from e
    if not line.strip():
        return None
    try:
        record = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise _LineError(
            f"not valid JSON ({e.msg} at column {e.colno}); "
            'each line must be one JSON object, e.g. {"_id": "d1", "text": "..."}'
        ) from e
    except RecursionError as e:
        raise _LineError("JSON nested too deeply") from e
    if not isinstance(record, dict):
        raise _LineError(
            f"expected a JSON object, got {type(record).__name__}; "
            'each line must be one JSON object, e.g. {"_id": "d1", "text": "..."}'
        )
    return record


def _parse_record(raw: bytes, line_no: int) -> tuple[str, str, str, dict[str, Any], list[str]] | None:
    """`(id, title, text, extra meta, notes)` of one JSONL line, `None` for a blank line.

    :raises _LineError: with the reason the line cannot be loaded.
    """
    record = _parse_object(raw, line_no)
    if record is None:
        return None
    notes: list[str] = []
    if _SURROGATE_ESCAPE.search(raw):
        record = _replace_lone_surrogates(record, notes)
    id_key = "_id" if "_id" in record else "id" if "id" in record else None
    raw_id = record[id_key] if id_key is not None else None
    if id_key is None or raw_id is None or raw_id == "":
        raise _LineError(
            f"the record has no '_id' or 'id' field (keys: {sorted(record)}); give every record a unique id"
        )
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise _LineError(
            f"the record's {id_key!r} is {type(raw_id).__name__} {str(raw_id)[:40]!r}; ids must be strings or integers"
        )
    doc_id = str(raw_id)
    if _LONE_SURROGATE.search(doc_id):
        raise _LineError(f"the record's {id_key!r} holds a lone surrogate, which is not valid Unicode; fix the id")
    text_key = "text" if "text" in record else "content" if "content" in record else None
    if text_key is None or not isinstance(record[text_key], str):
        raise _LineError(
            f"the record has no string 'text' or 'content' field (keys: {sorted(record)}); "
            "put the passage text in 'text'"
        )
    title = record.get("title")
    title = title.strip() if isinstance(title, str) else ""
    extra = {k: v for k, v in record.items() if k not in {id_key, text_key, "title"}}
    for key in (PATH_KEY, CHUNK_KEY):
        if key in extra:
            notes.append(f"the record's own {key!r} field is kept in meta instead of the one lens-rag adds")
    return doc_id, title, record[text_key], extra, notes


def _replace_lone_surrogates(value: Any, notes: list[str], where: str = "") -> Any:
    """`value` with lone surrogates in strings (and keys) replaced by U+FFFD; a note per place changed.

    Paired surrogate escapes (``"\\ud83d\\ude00"``) are decoded by `json` into one character and are not touched.
    """
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            notes.append(f"lone surrogate(s) in {where or 'a value'} replaced by U+FFFD (not valid Unicode)")
            return _LONE_SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, list):
        return [_replace_lone_surrogates(v, notes, where) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = k
            if k in ("_id", "id") and not where:
                out[k] = v  # ids are checked (and refused) by the caller, never altered
                continue
            if _LONE_SURROGATE.search(k):
                notes.append(f"lone surrogate(s) in the key {k!r} replaced by U+FFFD")
                key = _LONE_SURROGATE.sub("\ufffd", k)
            out[key] = _replace_lone_surrogates(v, notes, f"'{k}'" if not where else where)
        return out
    return value


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
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    tokenizer: Any = "default",
    progress: bool = True,
    on_error: OnError = "raise",
) -> SourceReader:
    """Open a folder of text files, a JSONL file or a BEIR dataset folder as a stream of `Document`s.

    The path is checked now (missing, empty, unsupported → :class:`DatasetError`); documents are
    read when the returned reader is iterated; :meth:`SourceReader.scan` checks every record first.
    See the module docstring for ids, metadata, content layout and chunking.

    :param path: a folder of ``.txt``/``.md`` files, a single such file, a ``.jsonl`` file, or a BEIR
        folder holding ``corpus.jsonl``.
    :param chunk: chunk long texts; ``None`` (default) chunks folders and JSONL files but not BEIR
        corpora, whose original ids evaluation needs.
    :param chunk_size: the most tokens of text per chunk (special tokens excluded); `None` fits the
        tokenizer's 256-token default window (254 for the packaged tokenizer; 150 words without one).
    :param chunk_overlap: the most tokens a chunk repeats from the end of the previous one (default 50; 30 words).
    :param tokenizer: what chunks are measured in: ``"default"`` (the packaged SPLADE-tiny tokenizer, the same
        tokens as MiniLM), a model name or folder (its ``tokenizer.json``), a tokenizer object, or `None` (words).
        Use the tokenizer of the encoders you index with.
    :param progress: show a progress bar while reading.
    :param on_error: ``"raise"`` stops at a bad JSONL line (DatasetError naming file and line); ``"skip"``
        records it in ``reader.skipped`` and goes on.
    :returns: a :class:`SourceReader`; iterate it for documents, read ``.skipped`` afterwards.
    :raises DatasetError: if the path is missing, unsupported, or holds no text files / no records.
    :raises ConfigurationError: if the chunking parameters or `on_error` cannot work.
    """
    if on_error not in ("raise", "skip"):
        raise ConfigurationError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not chunk and chunk_size is not None:  # explicit sizes are checked even when they go unused
        validate_chunking(chunk_size, chunk_overlap if chunk_overlap is not None else 0)
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
    chunker = Chunker(tokenizer, chunk_size, chunk_overlap) if chunk else None
    logger.debug("Loading %s source %s (chunker=%s)", kind, source, chunker)
    return SourceReader(source, kind, chunker=chunker, progress=progress, on_error=on_error)


def scan_source(path: str | Path, **kwargs: Any) -> SourceScan:
    """`load_source(path, **kwargs).scan()` without a tokenizer: every problem of a source, before any model loads.

    :raises DatasetError: if the path is missing, unsupported or empty (as :func:`load_source`).
    """
    kwargs.setdefault("chunk", False)
    return load_source(path, **kwargs).scan()
