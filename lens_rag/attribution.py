"""Post-hoc attribution: link every sentence of an answer to the retrieved passage that supports it best.

A small model often writes a fluent answer and cites nothing (or cites ``[1]`` by habit). Attribution
does not trust the model's own ``[n]``: each answer sentence is compared with every retrieved passage,
and the best passage is reported with its support score, or the sentence is marked **unsupported**
when no passage reaches `threshold`. The model's inline citations are kept apart
(:attr:`SentenceAttribution.inline`), so a reader sees both what the model claimed and what the text supports.

Support of sentence *s* by passage *p* mixes two signals, each in ``[0, 1]``:

- **lexical**: the share of the sentence's content terms (stemmed, stopwords dropped) found in the passage,
  each term weighted by a BM25-style IDF computed over the retrieved passages, so rare, specific
  words count more than words every passage shares;
- **dense** (when an embedding function is given, e.g. the store's dense encoder): the cosine between
  the sentence and the passage's closest window of two sentences, clipped at 0.

``support = lexical_weight * lexical + (1 - lexical_weight) * dense`` (lexical only without embeddings).
Sentences with fewer than `min_terms` content terms ("Yes.", "I hope this helps.") carry no claim and
are reported as ``"trivial"``, not counted either way.

Usage::

    from lens_rag.attribution import attribute_answer, dense_embedder

    rows = attribute_answer(answer.answer_text, answer.passages, embed=dense_embedder(encoders.dense))
    for row in rows:
        print(row.status, row.passage_number, round(row.support, 2), row.sentence)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from lens_rag.answer import parse_citations
from lens_rag.documents import ScoredDocument
from lens_rag.errors import ConfigurationError

__all__ = [
    "DEFAULT_LEXICAL_WEIGHT",
    "DEFAULT_THRESHOLD",
    "SentenceAttribution",
    "attribute_answer",
    "attribution_summary",
    "content_terms",
    "dense_embedder",
    "split_sentences",
]

#: Support at or above this links a sentence to a passage; below it the sentence is "unsupported".
#: Chosen on 50 SciFact claims answered by SmolLM2-135M (benchmarks/serve_attribution.py, benchmarks/RESULTS.md):
#: 45 % of sentences supported, 56 % of those by a relevant document; higher thresholds gain little precision.
DEFAULT_THRESHOLD = 0.45
DEFAULT_LEXICAL_WEIGHT = 0.5

#: ``(texts) -> [n, d]`` embeddings; rows need not be normalised.
Embed = Callable[[Sequence[str]], np.ndarray]

_CITATION_MARK = re.compile(r"\s*\[\s*\d+(?:\s*(?:[,;]|-|–|and)\s*\d+)*\s*\]")
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace and a capital,
# digit or citation mark; marks that open the next piece are moved back to their sentence.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')]))\s+(?=[\"'(\[]?[A-Z0-9\[])")
_LEADING_MARKS = re.compile(r"^(?:\[\s*\d+(?:\s*(?:[,;]|-|–|and)\s*\d+)*\s*\]\s*)+")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here hers
    herself him himself his how i if in into is it its itself just may me might more most must my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up upon very was we were what
    when where which while who whom why will with would you your yours yourself yourselves yes one two many much
    however therefore thus also et al use used using based show shows shown study studies passage passages answer
    question according""".split()
)


@dataclass
class SentenceAttribution:
    """One answer sentence and the retrieved passage that supports it best.

    :param sentence: the sentence as written (inline citation marks included).
    :param status: ``"supported"``, ``"unsupported"`` (best support below the threshold) or ``"trivial"``
        (too few content terms to check).
    :param passage_number: the 1-based number of the best passage (``[n]`` in the prompt), `None` when unsupported
        or trivial.
    :param document_id: that passage's document id.
    :param support: the best passage's support score in ``[0, 1]`` (0 for trivial sentences).
    :param lexical: its lexical part.
    :param dense: its dense part (`None` without embeddings).
    :param best_passage_number: the best-scoring passage even when below the threshold (for inspection).
    :param inline: the passage numbers the model itself cited in this sentence.
    """

    sentence: str
    status: str
    passage_number: int | None
    document_id: str | None
    support: float
    lexical: float
    dense: float | None
    best_passage_number: int | None = None
    inline: list[int] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return self.status == "supported"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    try:
        import Stemmer
    except ImportError:  # PyStemmer is a core dependency; degrade to no stemming rather than fail
        return None
    return Stemmer.Stemmer("english")


def content_terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words of `text` (stopwords, citation marks and 1-letter tokens dropped)."""
    words = [w for w in _WORD.findall(_CITATION_MARK.sub(" ", text).lower()) if len(w) > 1 and w not in _STOPWORDS]
    stemmer = _stemmer()
    return list(stemmer.stemWords(words)) if stemmer is not None else words


def split_sentences(text: str) -> list[str]:
    """`text` split into sentences; citation marks written after the full stop stay with their sentence."""
    text = text.strip()
    if not text:
        return []
    sentences: list[str] = []
    for part in _SENTENCE_END.split(text):
        part = part.strip()
        marks = _LEADING_MARKS.match(part)
        if marks and sentences:
            sentences[-1] = f"{sentences[-1]} {marks.group().strip()}"
            part = part[marks.end() :].strip()
        if part:
            sentences.append(part)
    return sentences


def _windows(text: str, size: int = 2, limit: int = 40) -> list[str]:
    sentences = split_sentences(text)[:limit] or [text]
    if len(sentences) <= size:
        return [" ".join(sentences)]
    return [" ".join(sentences[i : i + size]) for i in range(len(sentences) - size + 1)]


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def dense_embedder(encoder: Any) -> Embed:
    """An :data:`Embed` function from a dense encoder (``encode_documents_array`` or ``encode_documents``)."""
    array = getattr(encoder, "encode_documents_array", None)
    if callable(array):
        return lambda texts: np.asarray(array(list(texts)), dtype=np.float32)
    plain = encoder.encode_documents
    return lambda texts: np.asarray(plain(list(texts)), dtype=np.float32)


def _passage_text(hit: ScoredDocument) -> str:
    doc = hit.document
    title = doc.meta.get("title") if isinstance(doc.meta, dict) else None
    if title and not doc.content.lstrip().startswith(str(title)):
        return f"{title}. {doc.content}"
    return doc.content


def attribute_answer(
    answer_text: str,
    passages: Sequence[ScoredDocument],
    *,
    embed: Embed | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
    min_terms: int = 2,
) -> list[SentenceAttribution]:
    """Link each sentence of `answer_text` to the passage in `passages` that supports it best.

    :param answer_text: the model's answer.
    :param passages: the retrieved passages in prompt order (passage ``[n]`` is ``passages[n - 1]``).
    :param embed: an embedding function (see :func:`dense_embedder`); `None` scores lexically only.
    :param threshold: the least support that counts as supported.
    :param lexical_weight: the lexical share of the support score when `embed` is given.
    :param min_terms: sentences with fewer content terms are ``"trivial"``.
    :returns: one :class:`SentenceAttribution` per sentence, in order.
    :raises ConfigurationError: on a threshold or weight outside ``[0, 1]``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ConfigurationError(f"threshold must be in [0, 1] (the least support score), got {threshold!r}")
    if not 0.0 <= lexical_weight <= 1.0:
        raise ConfigurationError(f"lexical_weight must be in [0, 1], got {lexical_weight!r}")
    sentences = split_sentences(answer_text)
    if not sentences:
        return []
    sentence_terms = [content_terms(s) for s in sentences]
    passage_texts = [_passage_text(p) for p in passages]
    passage_terms = [set(content_terms(t)) for t in passage_texts]
    n_passages = len(passages)
    df: dict[str, int] = {}
    for terms in passage_terms:
        for t in terms:
            df[t] = df.get(t, 0) + 1

    def idf(term: str) -> float:
        d = df.get(term, 0)
        return math.log(1.0 + (n_passages - d + 0.5) / (d + 0.5))

    checked = [i for i, terms in enumerate(sentence_terms) if len(set(terms)) >= min_terms]
    lexical = np.zeros((len(sentences), n_passages), dtype=np.float32)
    for i in checked:
        terms = set(sentence_terms[i])
        total = sum(idf(t) for t in terms)
        for j, pterms in enumerate(passage_terms):
            lexical[i, j] = sum(idf(t) for t in terms & pterms) / total if total > 0 else 0.0
    dense: np.ndarray | None = None
    if embed is not None and checked and n_passages:
        windows = [_windows(t) for t in passage_texts]
        flat = [w for ws in windows for w in ws]
        vectors = _normalise(embed([sentences[i] for i in checked] + flat))
        sent_vecs, win_vecs = vectors[: len(checked)], vectors[len(checked) :]
        sims = sent_vecs @ win_vecs.T
        dense = np.zeros((len(sentences), n_passages), dtype=np.float32)
        start = 0
        for j, ws in enumerate(windows):
            block = sims[:, start : start + len(ws)]
            dense[checked, j] = np.clip(block.max(axis=1), 0.0, 1.0)
            start += len(ws)
    support = lexical if dense is None else lexical_weight * lexical + (1.0 - lexical_weight) * dense
    rows: list[SentenceAttribution] = []
    checked_set = set(checked)
    for i, sentence in enumerate(sentences):
        inline = [n for n in parse_citations(sentence) if 1 <= n <= n_passages]
        if i not in checked_set or n_passages == 0:
            status = "trivial" if i not in checked_set else "unsupported"
            rows.append(SentenceAttribution(sentence, status, None, None, 0.0, 0.0, None, None, inline))
            continue
        j = int(np.argmax(support[i]))
        score = float(support[i, j])
        ok = score >= threshold
        rows.append(
            SentenceAttribution(
                sentence=sentence,
                status="supported" if ok else "unsupported",
                passage_number=j + 1 if ok else None,
                document_id=passages[j].id if ok else None,
                support=round(score, 4),
                lexical=round(float(lexical[i, j]), 4),
                dense=None if dense is None else round(float(dense[i, j]), 4),
                best_passage_number=j + 1,
                inline=inline,
            )
        )
    return rows


def attribution_summary(rows: Sequence[SentenceAttribution]) -> dict[str, Any]:
    """Counts over :func:`attribute_answer` rows: sentences checked, supported, and the passages they point at."""
    checked = [r for r in rows if r.status != "trivial"]
    supported = [r for r in checked if r.supported]
    return {
        "sentences": len(rows),
        "checked": len(checked),
        "supported": len(supported),
        "unsupported": len(checked) - len(supported),
        "passages": sorted({r.passage_number for r in supported if r.passage_number is not None}),
    }
