"""Split long text into chunks that fit an encoder's window, counted in the encoder's own tokens.

A chunk is always a slice of the original text (whitespace and line breaks kept), cut between
sentences where it can, and measured with the tokenizer of the models that will encode it, so a
chunk never runs past the window and its tail is never silently dropped by truncation.

Rules (:meth:`Chunker.split`): text of at most ``chunk_size`` tokens is one chunk. Longer text is
split into paragraphs (blank lines) and sentences, and whole sentences are packed greedily up to
``chunk_size`` tokens; a chunk that is at least half full ends early at a paragraph boundary rather
than cut into a paragraph that would not fit. Each next chunk starts with the trailing whole
sentences of the previous one spanning at most ``chunk_overlap`` tokens. A sentence longer than
``chunk_size`` tokens is cut into overlapping token windows, at whitespace where possible.

Defaults: the packaged SPLADE-tiny tokenizer (BERT uncased WordPiece, the same vocabulary and
tokenization as the packaged MiniLM), :data:`DEFAULT_CHUNK_SIZE` = 254 tokens — the 256-token
window of both default encoders less ``[CLS]`` and ``[SEP]`` — and :data:`DEFAULT_CHUNK_OVERLAP`
= 50 tokens (about 20 %, so a fact that straddles a boundary stays findable). Without a tokenizer
(``tokenizer=None``) tokens are whitespace-separated words, with defaults of 150 and 30 words:
English prose runs about 1.3 BERT tokens per word and technical text about 1.6 (SciFact: 1.56),
so word chunks can still exceed a 256-token window on dense technical text.

Usage::

    chunker = Chunker()                       # packaged tokenizer, 254-token chunks
    chunks = chunker.split(long_text)
    chunker.count(chunks[0]) <= 254           # True
    Chunker(tokenizer=None).split(long_text)  # word-based fallback
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lens_rag.errors import ConfigurationError, ModelLoadError

__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WINDOW",
    "DEFAULT_WORD_CHUNK_OVERLAP",
    "DEFAULT_WORD_CHUNK_SIZE",
    "Chunker",
    "HFTokenizer",
    "TextTokenizer",
    "WordTokenizer",
    "chunk_text",
    "default_tokenizer",
    "load_tokenizer",
]

logger = logging.getLogger(__name__)

#: The window of both default encoders (SPLADE-tiny's `max_length`, MiniLM's `max_seq_length`),
#: special tokens included.
DEFAULT_WINDOW = 256
DEFAULT_CHUNK_SIZE = DEFAULT_WINDOW - 2  # less [CLS] and [SEP]
DEFAULT_CHUNK_OVERLAP = 50
DEFAULT_WORD_CHUNK_SIZE = 150
DEFAULT_WORD_CHUNK_OVERLAP = 30

_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_WORD = re.compile(r"\S+")

Span = tuple[int, int]


@runtime_checkable
class TextTokenizer(Protocol):
    """What chunking needs from a tokenizer: token character spans, and how many special tokens it adds."""

    name: str
    num_special_tokens: int

    def offsets(self, text: str) -> list[Span]: ...


class WordTokenizer:
    """Whitespace-separated words as tokens: the fallback when no model tokenizer is given."""

    name = "words"
    num_special_tokens = 0

    def offsets(self, text: str) -> list[Span]:
        return [m.span() for m in _WORD.finditer(text)]

    def __repr__(self) -> str:
        return "WordTokenizer()"


class HFTokenizer:
    """A Hugging Face fast tokenizer (`tokenizers.Tokenizer` or a `transformers` fast tokenizer) as a
    :class:`TextTokenizer`. Truncation and padding configured in the file are switched off.

    :param tokenizer: the wrapped tokenizer.
    :param name: a label for messages and `repr`.
    """

    def __init__(self, tokenizer: Any, name: str = "tokenizer") -> None:
        self.name = name
        self._hf_fast = hasattr(tokenizer, "backend_tokenizer")  # transformers PreTrainedTokenizerFast
        raw = tokenizer.backend_tokenizer if self._hf_fast else tokenizer
        if not hasattr(raw, "encode") or not hasattr(raw, "no_truncation"):
            raise ConfigurationError(
                f"tokenizer must be a `tokenizers.Tokenizer` or a transformers *fast* tokenizer, got "
                f"{type(tokenizer).__name__}; load one with load_tokenizer(model_name_or_path)"
            )
        raw = _copy_tokenizer(raw)
        raw.no_truncation()
        raw.no_padding()
        self._tokenizer = raw
        processor = raw.post_processor
        self.num_special_tokens = int(processor.num_special_tokens_to_add(False)) if processor is not None else 0

    def offsets(self, text: str) -> list[Span]:
        if len(text) <= _BLOCK_CHARS:
            return [tuple(o) for o in self._tokenizer.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]
        # Tokenizing one long string costs more than linear time (600k tokens: 11 s, against 1 s in 8 kB blocks):
        # tokenize blocks cut at whitespace, which a BERT-style pre-tokenizer splits at anyway.
        blocks = _blocks(text)
        encodings = self._tokenizer.encode_batch([text[a:b] for a, b in blocks], add_special_tokens=False)
        return [(a + s, a + e) for (a, _), enc in zip(blocks, encodings) for s, e in enc.offsets]

    def __repr__(self) -> str:
        return f"HFTokenizer(name={self.name!r})"


_BLOCK_CHARS = 8192
_SPACE = re.compile(r"\s")


def _blocks(text: str) -> list[Span]:
    """`(start, end)` blocks of about `_BLOCK_CHARS` covering `text`, cut after whitespace where there is some."""
    blocks: list[Span] = []
    start = 0
    while start < len(text):
        end = min(start + _BLOCK_CHARS, len(text))
        if end < len(text):
            window = text[end - _BLOCK_CHARS // 8 : end]
            cut = max((m.end() for m in _SPACE.finditer(window)), default=0)
            if cut:
                end = end - _BLOCK_CHARS // 8 + cut
        blocks.append((start, end))
        start = end
    return blocks


def _copy_tokenizer(raw: Any) -> Any:
    # no_truncation() mutates; never change a tokenizer an encoder also uses
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(raw.to_str())
    except Exception:  # pragma: no cover - a tokenizer that cannot serialise is used as is
        return raw


def load_tokenizer(name_or_path: str | Path) -> HFTokenizer:
    """The fast tokenizer of a model: `tokenizer.json` in its folder (no weights, no `transformers` import),
    else `transformers.AutoTokenizer` (a Hub name needs network or a cache).

    :param name_or_path: a model folder, an offline alias (``"splade-tiny"``, ``"all-MiniLM-L6-v2"``), or a Hub name.
    :raises ModelLoadError: if no fast tokenizer can be loaded.
    """
    from lens_rag.models import resolve_model

    resolved = Path(resolve_model(str(name_or_path)))
    file = resolved / "tokenizer.json" if resolved.is_dir() else resolved
    if file.name == "tokenizer.json" and file.is_file():
        from tokenizers import Tokenizer

        try:
            return HFTokenizer(Tokenizer.from_file(str(file)), name=str(name_or_path))
        except Exception as e:
            raise ModelLoadError(f"could not read the tokenizer {file}: {e}") from e
    if not resolved.exists() and (resolved.is_absolute() or str(name_or_path).startswith((".", "~"))):
        raise ModelLoadError(
            f"could not load a tokenizer for {str(name_or_path)!r}: no such folder; pass a model folder holding "
            "tokenizer.json, an offline alias or a Hugging Face model name"
        )
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(resolved))
    except Exception as e:
        raise ModelLoadError(
            f"could not load a tokenizer for {str(name_or_path)!r} ({e}); pass a model folder holding tokenizer.json"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"the tokenizer of {str(name_or_path)!r} is not a fast tokenizer; chunking needs offsets")
    return HFTokenizer(tokenizer, name=str(name_or_path))


_DEFAULT_TOKENIZER: list[HFTokenizer | None] = []


def default_tokenizer() -> HFTokenizer | None:
    """The packaged SPLADE-tiny tokenizer (loaded once), or `None` with a warning when it is not installed."""
    if not _DEFAULT_TOKENIZER:
        from lens_rag.models import DEFAULT_SPARSE_MODEL

        try:
            _DEFAULT_TOKENIZER.append(load_tokenizer(DEFAULT_SPARSE_MODEL))
        except ModelLoadError as e:
            logger.warning("Chunking by words: the default tokenizer is unavailable (%s)", e)
            _DEFAULT_TOKENIZER.append(None)
    return _DEFAULT_TOKENIZER[0]


@dataclass(frozen=True)
class _Unit:
    start: int  # first token index
    end: int  # one past the last token index
    paragraph: int
    hard: bool = False  # cut inside a run of non-space text


class Chunker:
    """Splits text into chunks of at most `chunk_size` tokens (see the module docstring for the rules).

    :param tokenizer: ``"default"`` (the packaged SPLADE-tiny tokenizer, falling back to words if it is not
        installed), a model name or path (its ``tokenizer.json``), a :class:`TextTokenizer`, a
        `tokenizers.Tokenizer` / transformers fast tokenizer, or `None` for whitespace words.
    :param chunk_size: the most tokens of text in one chunk, special tokens excluded; `None` uses
        :data:`DEFAULT_CHUNK_SIZE` (model tokens) or :data:`DEFAULT_WORD_CHUNK_SIZE` (words).
    :param chunk_overlap: the most tokens a chunk repeats from the end of the previous one; `None` uses
        :data:`DEFAULT_CHUNK_OVERLAP` or :data:`DEFAULT_WORD_CHUNK_OVERLAP`.
    :raises ConfigurationError: if the sizes cannot work.
    """

    def __init__(
        self, tokenizer: Any = "default", chunk_size: int | None = None, chunk_overlap: int | None = None
    ) -> None:
        self.tokenizer: TextTokenizer = _as_tokenizer(tokenizer)
        words = isinstance(self.tokenizer, WordTokenizer)
        if chunk_size is None:
            chunk_size = DEFAULT_WORD_CHUNK_SIZE if words else DEFAULT_WINDOW - self.tokenizer.num_special_tokens
        if chunk_overlap is None:
            chunk_overlap = min(DEFAULT_WORD_CHUNK_OVERLAP if words else DEFAULT_CHUNK_OVERLAP, chunk_size // 5)
        validate_chunking(chunk_size, chunk_overlap, "words" if words else "tokens")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap

    def __repr__(self) -> str:
        return (
            f"Chunker(tokenizer={self.tokenizer!r}, chunk_size={self.chunk_size}, chunk_overlap={self.chunk_overlap})"
        )

    @property
    def unit(self) -> str:
        return "words" if isinstance(self.tokenizer, WordTokenizer) else "tokens"

    def count(self, text: str) -> int:
        """Tokens in `text`, special tokens excluded."""
        return len(self.tokenizer.offsets(text))

    def split(self, text: str, reserved: int = 0) -> list[str]:
        """Chunks of `text`, in order; each a slice of the original text. Whitespace-only text gives none.

        :param reserved: tokens the caller adds to every chunk (e.g. a title prefix); the chunks are that much
            shorter. At most half of `chunk_size` is reserved.
        """
        stripped = text.strip()
        if not stripped:
            return []
        offsets = self.tokenizer.offsets(text)
        budget = self.chunk_size - min(max(reserved, 0), self.chunk_size // 2)
        if len(offsets) <= budget:
            return [stripped]
        overlap = min(self.chunk_overlap, budget // 2)
        units = self._units(text, offsets, budget, overlap)
        return [text[offsets[start][0] : offsets[end - 1][1]] for start, end in _pack(units, budget, overlap)]

    def _units(self, text: str, offsets: list[Span], budget: int, overlap: int) -> list[_Unit]:
        starts = [s for s, _ in offsets]

        def fits(start: int, end: int) -> bool:  # a slice cut inside a word may re-tokenize into more pieces
            return self.count(text[offsets[start][0] : offsets[end - 1][1]]) <= budget

        units: list[_Unit] = []
        for p_index, (p_start, p_end) in enumerate(_spans(text, _PARAGRAPH_SPLIT, 0, len(text))):
            for s_start, s_end in _spans(text, _SENTENCE_SPLIT, p_start, p_end):
                a, b = bisect.bisect_left(starts, s_start), bisect.bisect_left(starts, s_end)
                if a >= b:
                    continue
                if b - a <= budget:
                    units.append(_Unit(a, b, p_index))
                else:
                    units.extend(_windows(offsets, a, b, budget, overlap, p_index, fits))
        return units


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[Span]:
    spans: list[Span] = []
    pos = start
    for m in pattern.finditer(text, start, end):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, end))
    return [(s, e) for s, e in spans if e > s]


def _windows(
    offsets: list[Span], a: int, b: int, budget: int, overlap: int, paragraph: int, fits: Callable[[int, int], bool]
) -> list[_Unit]:
    """Overlapping windows of at most `budget` tokens over tokens [a, b), cut at whitespace where possible.

    A window cut inside a word (no whitespace within reach) is `hard`: it is shortened until its text,
    tokenized on its own, fits.
    """

    def gap_before(i: int) -> bool:  # whitespace (or nothing) between token i-1 and token i
        return i >= len(offsets) or offsets[i][0] > offsets[i - 1][1]

    out: list[_Unit] = []
    start = a
    while True:
        end = min(start + budget, b)
        if end < b:
            end = next((i for i in range(end, start + budget // 2, -1) if gap_before(i)), end)
        hard = not gap_before(end) or (start > a and not gap_before(start))
        if hard:
            while end - start > 1 and not fits(start, end):
                end -= 1
        out.append(_Unit(start, end, paragraph, hard))
        if end >= b:
            return out
        nxt = max(end - overlap, start + 1)
        # start the next window at a word start if there is one in the overlap
        start = next((i for i in range(nxt, end) if gap_before(i)), nxt)


def _pack(units: Sequence[_Unit], budget: int, overlap: int) -> list[Span]:
    """Greedy packing of units into token ranges `(start, end)`; a hard-cut unit is a chunk of its own."""
    paragraph_end: dict[int, int] = {}
    for u in units:
        paragraph_end[u.paragraph] = max(paragraph_end.get(u.paragraph, 0), u.end)
    chunks: list[Span] = []
    current: list[_Unit] = []
    fresh = 0  # units in `current` that are not overlap carried from the previous chunk
    i = 0
    while i < len(units):
        unit = units[i]
        if unit.hard:  # its size holds only for its own text (checked in _windows)
            if fresh:
                chunks.append((current[0].start, current[-1].end))
            chunks.append((unit.start, unit.end))
            current, fresh = [], 0
            i += 1
            continue
        first = current[0].start if current else unit.start
        size = current[-1].end - first if current else 0
        too_long = unit.end - first > budget
        paragraph_break = (
            bool(current)
            and unit.paragraph != current[-1].paragraph
            and size >= budget / 2
            and paragraph_end[unit.paragraph] - first > budget
        )
        if current and fresh and (too_long or paragraph_break):
            end = current[-1].end
            chunks.append((first, end))
            kept: list[_Unit] = []
            for prev in reversed(current):
                if end - prev.start > overlap:
                    break
                kept.insert(0, prev)
            if kept and unit.end - kept[0].start > budget:  # the overlap would not leave room for the next unit
                kept = []
            current, fresh = kept, 0
            continue
        current.append(unit)
        fresh += 1
        i += 1
    if fresh:
        chunks.append((current[0].start, current[-1].end))
    return chunks


def _as_tokenizer(tokenizer: Any) -> TextTokenizer:
    if tokenizer is None:
        return WordTokenizer()
    if isinstance(tokenizer, str) and tokenizer == "default":
        return default_tokenizer() or WordTokenizer()
    if isinstance(tokenizer, str | Path):
        return load_tokenizer(tokenizer)
    if isinstance(tokenizer, TextTokenizer):
        return tokenizer
    return HFTokenizer(tokenizer, name=type(tokenizer).__name__)


def validate_chunking(chunk_size: Any, chunk_overlap: Any, unit: str = "tokens") -> None:
    """:raises ConfigurationError: unless `chunk_size` >= 1 and 0 <= `chunk_overlap` < `chunk_size` (ints)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be a positive number of {unit}, got {chunk_size!r}; e.g. 200")
    if isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int) or chunk_overlap < 0:
        raise ConfigurationError(f"chunk_overlap must be 0 or more {unit}, got {chunk_overlap!r}; e.g. 40")
    if chunk_overlap >= chunk_size:
        raise ConfigurationError(
            f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size}); "
            "use e.g. a fifth of chunk_size"
        )


def chunk_text(
    text: str,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    *,
    tokenizer: Any = None,
) -> list[str]:
    """Split `text` into chunks of at most `chunk_size` tokens; words unless a `tokenizer` is given.

    A shortcut for ``Chunker(tokenizer, chunk_size, chunk_overlap).split(text)``.

    :returns: the chunks, in order, each a slice of the original text; ``[text.strip()]`` when it fits.
    :raises ConfigurationError: if `chunk_size` < 1 or `chunk_overlap` is negative or >= `chunk_size`.
    """
    return Chunker(tokenizer, chunk_size, chunk_overlap).split(text)
