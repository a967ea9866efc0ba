"""Turn a follow-up ("how is it treated?") into a standalone search query, using the conversation.

Two ways, the first with a fallback to the second:

1. **LLM** (:func:`condense_query_async`): the earlier turns and the follow-up go to the LLM, which
   rewrites the follow-up as a self-contained question. A small model can drift off topic, so the
   rewrite is checked: when it shares no content word with the conversation, is empty, or is far longer
   than a question, the keyword rewrite is used instead (and so when the LLM fails or times out).
2. **Keywords, no LLM** (:func:`keyword_condense`): the follow-up, followed by the content words of the
   earlier *user* turns (newest first, stopwords dropped, at most `max_terms`). "How is it treated?" after
   "What causes scurvy?" becomes "How is it treated? causes scurvy" — a retriever finds scurvy passages.
   Assistant turns are left out: their wording is the model's, not the user's subject.

A first question (no earlier user turn) is used as it is, with no LLM call.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lens_rag.attribution import content_terms
from lens_rag.errors import LLMError
from lens_rag.llm.base import LLMClient

__all__ = ["CONDENSE_PROMPT", "Condensed", "condense_query_async", "keyword_condense"]

logger = logging.getLogger(__name__)

CONDENSE_PROMPT = (
    "Rewrite the last question so that it can be understood without the conversation: replace pronouns "
    "such as 'it' or 'they' with what they refer to. Reply with the rewritten question only.\n\n"
    "Conversation:\n{history}\n\nLast question: {question}\n\nRewritten question:"
)

_WORDS = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
# Question words and fillers a keyword query does not need (content_terms drops the usual stopwords).
_FILLER = frozenset("tell explain describe please know like want thanks thank hi hello ok okay".split())


@dataclass(frozen=True)
class Condensed:
    """The standalone query and how it was made: ``"as-is"``, ``"llm"`` or ``"keywords"``."""

    query: str
    how: str


def _turns(messages: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], str]:
    """(earlier user/assistant turns, last user text)."""
    last = max(i for i, (role, _) in enumerate(messages) if role == "user")
    history = [(r, t) for r, t in messages[:last] if r in ("user", "assistant") and t.strip()]
    return history, messages[last][1]


def keyword_condense(messages: Sequence[tuple[str, str]], max_terms: int = 12) -> str:
    """The no-LLM rewrite: the last user question plus the content words of the earlier user turns.

    :param messages: ``(role, text)`` pairs; the last ``user`` one is the question.
    :param max_terms: most words carried over from earlier turns.
    """
    history, question = _turns(messages)
    own = set(content_terms(question))
    carried: list[str] = []
    seen: set[str] = set()
    for role, text in reversed(history):
        if role != "user":
            continue
        for word in _WORDS.findall(text):
            stems = content_terms(word)
            if not stems or word.lower() in _FILLER:
                continue
            key = stems[0]
            if key in own or key in seen:
                continue
            seen.add(key)
            carried.append(word)
            if len(carried) >= max_terms:
                break
        if len(carried) >= max_terms:
            break
    return f"{question.strip()} {' '.join(carried)}".strip()


def _history_text(history: Sequence[tuple[str, str]], max_chars: int) -> str:
    lines = [f"{'User' if role == 'user' else 'Assistant'}: {' '.join(text.split())}" for role, text in history]
    text = "\n".join(lines)
    return text[-max_chars:]


async def condense_query_async(
    messages: Sequence[tuple[str, str]],
    llm: LLMClient | None,
    *,
    max_history_chars: int = 4000,
    timeout: float = 20.0,
    max_tokens: int = 48,
) -> Condensed:
    """The standalone search query for the last user message of `messages`.

    :param messages: ``(role, text)`` pairs in order; the last ``user`` one is the question.
    :param llm: the LLM that rewrites follow-ups; `None` uses :func:`keyword_condense`.
    :param max_history_chars: most characters of earlier turns shown to the LLM (the newest are kept).
    :param timeout: seconds to wait for the LLM before falling back to keywords.
    :returns: :class:`Condensed` (the query and how it was made).
    """
    history, question = _turns(messages)
    if not any(role == "user" for role, _ in history):
        return Condensed(question.strip(), "as-is")
    fallback = Condensed(keyword_condense(messages), "keywords")
    if llm is None:
        return fallback
    prompt = CONDENSE_PROMPT.format(history=_history_text(history, max_history_chars), question=question.strip())
    try:
        texts = await asyncio.wait_for(
            llm.generate_async(prompt, n=1, temperature=0.0, max_tokens=max_tokens), timeout=timeout
        )
    except (LLMError, TimeoutError) as e:
        logger.info("condensing the follow-up with the LLM failed (%s); using the keyword rewrite", e)
        return fallback
    rewrite = " ".join((texts[0] if texts else "").split())
    rewrite = re.sub(r"^(rewritten question|question)\s*:\s*", "", rewrite, flags=re.IGNORECASE).strip().strip('"')
    context_terms = {t for role, text in history if role == "user" for t in content_terms(text)}
    if not rewrite or len(rewrite) > 3 * max(len(question), 80) or not context_terms & set(content_terms(rewrite)):
        logger.debug("LLM rewrite %r dropped (empty, too long or off the conversation's subject)", rewrite)
        return fallback
    return Condensed(rewrite, "llm")
