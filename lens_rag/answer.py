"""Question answering over retrieved passages, with citations that point at those passages.

Retrieve → number the passages ``[1] … [k]`` in the prompt → the LLM answers and cites ``[n]`` →
the citations are parsed and mapped back to the retrieved documents. Nothing is invented: a
citation number outside ``1..k`` is reported in ``Answer.invalid_citations`` and not mapped, and
when the model cites nothing, ``Answer.citations`` is empty and ``Answer.cited`` is `False`
(``format_answer`` says so instead of attaching sources the model did not use).

Usage::

    from lens_rag.answer import answer_question, format_answer

    answer = answer_question("Does vitamin D reduce fractures?", retriever, llm, top_k=5)
    print(format_answer(answer))
    answer.to_json()
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lens_rag.documents import ScoredDocument
from lens_rag.errors import ConfigurationError
from lens_rag.filters import Filters
from lens_rag.lamer import passage_text, truncate_candidates
from lens_rag.llm.base import LLMClient, model_name_async
from lens_rag.retrieval import Retriever

__all__ = [
    "ANSWER_EXAMPLE",
    "ANSWER_SYSTEM_PROMPT",
    "ANSWER_TEMPLATE",
    "Answer",
    "Citation",
    "answer_from_text",
    "answer_question",
    "answer_question_async",
    "build_answer_prompt",
    "format_answer",
    "parse_citations",
]

ANSWER_SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages you are given. "
    "Cite the passages that support each sentence with their numbers in square brackets, like [1] or [2][3]. "
    "If the passages do not answer the question, say so."
)

#: The user message; ``{passages}`` gets ``[1] title. text`` lines, ``{question}`` the question.
ANSWER_TEMPLATE = (
    "Passages:\n{passages}\n\nQuestion: {question}\n\n"
    "Answer in two or three sentences and cite the passage numbers you used, like [1]."
)

#: A one-shot example exchange sent before the real question: small models (SmolLM2-135M) copy its citation
#: format far more reliably than they follow the instruction alone. It never enters the parsed answer. Its
#: supporting passage is [1]: a tiny model tends to copy the example's number, and the top-ranked passage is the
#: likeliest evidence — measured on SmolLM2, an example citing its last passage made the model cite the last one.
ANSWER_EXAMPLE: tuple[dict[str, str], ...] = (
    {
        "role": "user",
        "content": (
            "Passages:\n"
            "[1] Caffeine and sleep. Caffeine taken six hours before bedtime reduced total sleep time by one hour.\n"
            "[2] Tea exports. India exported more tea in 2019 than in 2018.\n\n"
            "Question: Does coffee affect sleep?\n\n"
            "Answer in two or three sentences and cite the passage numbers you used, like [1]."
        ),
    },
    {
        "role": "assistant",
        "content": "Yes. Caffeine taken six hours before bedtime reduced total sleep time by about one hour [1].",
    },
)

# [3], [1, 2], [1; 2], [1-3], [1–3]
_CITATION = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|-|–|and)\s*\d+)*)\s*\]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Citation:
    """One passage the answer cites.

    :param number: the passage number used in the prompt and the answer (1-based).
    :param document_id: the cited document's id.
    :param rank: the passage's rank in the retrieval results.
    :param score: the passage's retrieval score.
    :param title: the document's ``meta["title"]``, when it has one.
    """

    number: int
    document_id: str
    rank: int
    score: float
    title: str | None = None


@dataclass
class Answer:
    """An LLM answer with the passages it was given and the ones it cited.

    :param question: the question asked.
    :param answer_text: the model's answer, verbatim (stripped).
    :param passages: the retrieved passages, in prompt order (passage ``[n]`` is ``passages[n - 1]``).
    :param citations: the valid citations, in order of first mention; empty when the model cited nothing.
    :param invalid_citations: numbers the model cited that match no passage (not mapped to anything).
    :param model: the LLM that answered.
    """

    question: str
    answer_text: str
    passages: list[ScoredDocument]
    citations: list[Citation] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    model: str = ""

    @property
    def cited(self) -> bool:
        """Whether the answer cites at least one retrieved passage."""
        return bool(self.citations)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (passages without embeddings)."""
        cited_numbers = {c.number for c in self.citations}
        return {
            "question": self.question,
            "answer": self.answer_text,
            "model": self.model,
            "cited": self.cited,
            "note": None if self.cited else "the model cited no passage; the passages below were retrieved, not cited",
            "citations": [c.__dict__ for c in self.citations],
            "invalid_citations": list(self.invalid_citations),
            "passages": [
                {
                    "number": i,
                    "id": p.id,
                    "rank": p.rank,
                    "score": p.score,
                    "title": p.document.meta.get("title"),
                    "content": p.document.content,
                    "meta": p.document.meta,
                    "cited": i in cited_numbers,
                }
                for i, p in enumerate(self.passages, start=1)
            ],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The :meth:`to_dict` form as a JSON string."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent, default=str)


def _passage_line(number: int, hit: ScoredDocument, text: str) -> str:
    return f"[{number}] {text}"


def build_answer_prompt(
    question: str,
    passages: Sequence[ScoredDocument],
    template: str = ANSWER_TEMPLATE,
    system_prompt: str | None = ANSWER_SYSTEM_PROMPT,
    passage_token_budget: int = 1200,
    example: Sequence[Mapping[str, str]] | None = ANSWER_EXAMPLE,
) -> list[dict[str, str]]:
    """Chat messages asking for a cited answer: passages numbered ``[1] … [k]`` in retrieval order.

    :param template: the user message, with ``{passages}`` and ``{question}``.
    :param system_prompt: the system message; `None` sends none (the instructions must then be in `template`).
    :param passage_token_budget: the most tokens (approx.) all passages together may take; long ones are cut.
    :param example: chat messages sent between the system message and the question (a worked example of
        the citation format); `None` or ``()`` sends none.
    :raises ConfigurationError: when `template` lacks a placeholder.
    """
    for placeholder in ("{passages}", "{question}"):
        if placeholder not in template:
            raise ConfigurationError(f"template must contain {placeholder}, got {template[:80]!r}")
    texts = truncate_candidates([passage_text(p) for p in passages], passage_token_budget)
    lines = "\n".join(_passage_line(i, p, t) for i, (p, t) in enumerate(zip(passages, texts, strict=True), start=1))
    user = template.replace("{passages}", lines or "(no passages were found)").replace("{question}", question)
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    messages.extend({"role": m["role"], "content": m["content"]} for m in (example or ()))
    return [*messages, {"role": "user", "content": user}]


def parse_citations(text: str) -> list[int]:
    """The passage numbers cited as ``[n]`` in `text`, in order of first mention, without repeats.

    ``[1, 2]``, ``[1; 2]``, ``[1][2]`` and ranges ``[1-3]`` are understood.
    """
    numbers: list[int] = []
    for match in _CITATION.finditer(text):
        for part in re.split(r"\s*(?:[,;]|and)\s*", match.group(1)):
            bounds = re.split(r"\s*[-–]\s*", part)
            if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
                lo, hi = int(bounds[0]), int(bounds[1])
                expanded = list(range(lo, hi + 1)) if 0 <= hi - lo <= 20 else [lo, hi]
            else:
                expanded = [int(b) for b in bounds if b.isdigit()]
            for n in expanded:
                if n not in numbers:
                    numbers.append(n)
    return numbers


def answer_from_text(question: str, text: str, passages: list[ScoredDocument], model: str) -> Answer:
    """An :class:`Answer` from the LLM's text: its ``[n]`` citations mapped to `passages`, out-of-range ones apart."""
    citations, invalid = [], []
    for n in parse_citations(text):
        if 1 <= n <= len(passages):
            hit = passages[n - 1]
            citations.append(Citation(n, hit.id, hit.rank, hit.score, hit.document.meta.get("title")))
        else:
            invalid.append(n)
    return Answer(question, text.strip(), passages, citations, invalid, model)


def _check(question: str, top_k: int) -> None:
    if not isinstance(question, str) or not question.strip():
        raise ConfigurationError(f"question must be a non-empty string, got {question!r}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigurationError(f"top_k must be an integer >= 1 (how many passages to show the LLM), got {top_k!r}")


def answer_question(
    question: str,
    retriever: Retriever,
    llm: LLMClient,
    top_k: int = 5,
    filters: Filters | None = None,
    *,
    template: str = ANSWER_TEMPLATE,
    system_prompt: str | None = ANSWER_SYSTEM_PROMPT,
    max_tokens: int = 256,
    temperature: float = 0.0,
    passage_token_budget: int = 1200,
    example: Sequence[Mapping[str, str]] | None = ANSWER_EXAMPLE,
) -> Answer:
    """Retrieve passages for `question` and let `llm` answer it, citing them by number.

    :param question: the user's question.
    :param retriever: any :class:`~lens_rag.retrieval.Retriever` (hybrid in the CLI by default).
    :param llm: any :class:`~lens_rag.llm.base.LLMClient`.
    :param top_k: how many passages to put in the prompt.
    :param filters: metadata filters for retrieval.
    :param template: the user message template (``{passages}``, ``{question}``).
    :param system_prompt: the system message; `None` sends none.
    :param max_tokens: most tokens in the answer.
    :param temperature: 0 (greedy) by default, so answers are reproducible.
    :param passage_token_budget: the most tokens (approx.) all passages together may take in the prompt.
    :param example: the worked citation example sent before the question (:data:`ANSWER_EXAMPLE`); `None` sends none.
    :returns: the :class:`Answer`; with no retrieved passages the LLM is still asked and will say it cannot answer.
    :raises LLMError: when the LLM fails (there is no sensible answer without it).
    """
    _check(question, top_k)
    passages = retriever.retrieve(question, top_k=top_k, filters=filters)
    messages = build_answer_prompt(question, passages, template, system_prompt, passage_token_budget, example)
    text = llm.generate(messages, n=1, temperature=temperature, max_tokens=max_tokens)[0]
    return answer_from_text(question, text, passages, llm.model)


async def answer_question_async(
    question: str,
    retriever: Retriever,
    llm: LLMClient,
    top_k: int = 5,
    filters: Filters | None = None,
    *,
    template: str = ANSWER_TEMPLATE,
    system_prompt: str | None = ANSWER_SYSTEM_PROMPT,
    max_tokens: int = 256,
    temperature: float = 0.0,
    passage_token_budget: int = 1200,
    example: Sequence[Mapping[str, str]] | None = ANSWER_EXAMPLE,
) -> Answer:
    """The async twin of :func:`answer_question` (same arguments and result).

    Never blocks the event loop: retrieval and generation use their async paths, and the model name is
    read with :func:`~lens_rag.llm.base.model_name_async` (a client may have to ask its server for it).
    """
    _check(question, top_k)
    passages = await retriever.retrieve_async(question, top_k=top_k, filters=filters)
    messages = build_answer_prompt(question, passages, template, system_prompt, passage_token_budget, example)
    text = (await llm.generate_async(messages, n=1, temperature=temperature, max_tokens=max_tokens))[0]
    return answer_from_text(question, text, passages, await model_name_async(llm))


def format_answer(answer: Answer, snippet_chars: int = 160) -> str:
    """Human-readable answer for the CLI: the answer, then the cited sources (or an honest note that none were)."""
    lines = [answer.answer_text or "(the model returned an empty answer)", ""]
    if answer.cited:
        lines.append("Sources:")
        for c in answer.citations:
            hit = answer.passages[c.number - 1]
            snippet = _SPACES.sub(" ", hit.document.content).strip()
            if len(snippet) > snippet_chars:
                snippet = snippet[:snippet_chars].rstrip() + "…"
            title = f"{c.title} — " if c.title else ""
            lines.append(f"  [{c.number}] {c.document_id} (rank {c.rank}, score {c.score:.3f}) {title}{snippet}")
    else:
        lines.append("The model cited no passage. Retrieved passages (not cited):")
        for i, hit in enumerate(answer.passages, start=1):
            lines.append(f"  [{i}] {hit.id} (rank {hit.rank}, score {hit.score:.3f})")
    if answer.invalid_citations:
        lines.append(
            f"Ignored citations that match no passage: {', '.join(f'[{n}]' for n in answer.invalid_citations)}"
        )
    return "\n".join(lines)
