"""LameR: the LLM answers the query from retrieved candidates, and the answers expand the query (arXiv 2304.14233).

1. Retrieve the top ``n_candidates`` (M, default 10) with a first-stage retriever (BM25 in the paper).
2. Prompt the LLM with the question and the enumerated candidates — "most of these passages are
   wrong" — and sample ``n_answers`` (N, default 5) answering passages (temperature 1.0, 128 tokens).
3. Retrieve again with ``q a1 q a2 … q aN`` using the second-stage retriever (the first stage when not
   given; BM25, sparse or hybrid all work).

Failure is never silent: when the LLM errors, times out or returns only empty answers, the retriever
uses the original query, logs a warning and emits :class:`~lens_rag.llm.base.LLMFallbackWarning`
saying so; :meth:`LameRRetriever.augment` reports it in ``AugmentedQuery.fell_back``/``reason``.

The paper reports gains over BM25 with large LLMs (DL19 nDCG@10 50.6 → 69.1); on a strong learned
sparse first stage it can hurt, and a 135M model may not help at all — measure
(``benchmarks/lamer_scifact.py``).

Usage::

    from lens_rag.lamer import LameRRetriever
    from lens_rag.llm import OpenAICompatibleClient

    lamer = LameRRetriever(bm25, OpenAICompatibleClient(base_url="http://127.0.0.1:8080/v1"), second_stage=hybrid)
    hits = lamer.retrieve("0-dimensional biomaterials show inductive properties.", top_k=10)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lens_rag.documents import ScoredDocument
from lens_rag.errors import ConfigurationError, LLMError
from lens_rag.filters import Filters
from lens_rag.llm.base import LLMCache, LLMClient, LLMFallbackWarning, model_name_async, prompt_key
from lens_rag.retrieval import Retriever

__all__ = [
    "DOMAIN_ALIASES",
    "LAMER_TEMPLATES",
    "AugmentedQuery",
    "LameRRetriever",
    "LameRStats",
    "approx_token_count",
    "build_prompt",
    "compose_query",
    "passage_text",
    "truncate_candidates",
]

logger = logging.getLogger(__name__)

# The default is a public reproduction's wording (METHODS.md). The domain variants keep its structure
# and swap the nouns for the task, as the reproductions' SciFact / ArguAna / FiQA prompts do; the
# exact wording of those variants is ours.
LAMER_TEMPLATES: dict[str, str] = {
    "default": (
        'Give a question "{query}" and its possible answering passages (most of these passages are wrong) '
        "enumerated as:\n{candidates}\nplease write a correct answering passage."
    ),
    "scientific": (
        'Give a scientific claim "{query}" and its possible supporting or refuting abstracts (most of these '
        "abstracts are wrong) enumerated as:\n{candidates}\nplease write a correct scientific abstract that "
        "supports or refutes the claim."
    ),
    "counter-argument": (
        'Give an argument "{query}" and its possible counter-arguments (most of these passages are wrong) '
        "enumerated as:\n{candidates}\nplease write a correct passage that counters the argument."
    ),
    "finance": (
        'Give a financial question "{query}" and its possible answering posts (most of these posts are wrong) '
        "enumerated as:\n{candidates}\nplease write a correct financial answer to the question."
    ),
}

#: Dataset names that map to a domain template (e.g. ``domain="scifact"``).
DOMAIN_ALIASES: dict[str, str] = {
    "scifact": "scientific",
    "science": "scientific",
    "arguana": "counter-argument",
    "touche2020": "counter-argument",
    "fiqa": "finance",
}

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+")


def approx_token_count(text: str) -> int:
    """Count words and punctuation marks: close to (slightly under) a BPE tokenizer's count for English."""
    return sum(1 for _ in _PIECE.finditer(text))


def _truncate_to(text: str, budget: int) -> str:
    if budget <= 0:
        return ""
    for i, match in enumerate(_PIECE.finditer(text)):
        if i == budget:
            return text[: match.start()].rstrip() + " …"
    return text


def truncate_candidates(
    texts: Sequence[str], budget: int, count_tokens: Callable[[str], int] = approx_token_count
) -> list[str]:
    """Cut candidate passages so their total length fits `budget` tokens, fairly.

    Short passages keep all their tokens; what they leave unused is shared among the long ones
    (water-filling), so one long passage cannot crowd out the others.

    :param texts: the candidate passages, in rank order.
    :param budget: the most tokens all candidates may take together.
    :param count_tokens: token counter; the default counts words and punctuation.
    """
    lengths = [count_tokens(t) for t in texts]
    if sum(lengths) <= budget:
        return list(texts)
    remaining, open_idx = budget, sorted(range(len(texts)), key=lambda i: lengths[i])
    caps = [0] * len(texts)
    while open_idx:
        share = remaining // len(open_idx)
        i = open_idx[0]
        if lengths[i] <= share:
            caps[i] = lengths[i]
            remaining -= lengths[i]
            open_idx.pop(0)
        else:
            for j in open_idx:
                caps[j] = share
            break
    out = []
    for text, length, cap in zip(texts, lengths, caps, strict=True):
        if length <= cap:
            out.append(text)
        elif count_tokens is approx_token_count:
            out.append(_truncate_to(text, cap))
        else:  # a custom counter: cut on whitespace proportionally
            words = text.split()
            out.append(" ".join(words[: max(0, len(words) * cap // max(length, 1))]) + " …")
    return out


def passage_text(hit: ScoredDocument) -> str:
    """A passage as one line for a prompt: title (unless the content starts with it) and content, spaces collapsed."""
    doc = hit.document
    title = doc.meta.get("title") if isinstance(doc.meta, dict) else None
    # Ingested content already starts with its title (lens_rag.ingest); prefix it only when it does not.
    text = doc.content if not title or doc.content.lstrip().startswith(str(title)) else f"{title}. {doc.content}"
    return _SPACES.sub(" ", text).strip()


def build_prompt(query: str, candidates: Sequence[str], template: str) -> str:
    """Fill a LameR template: ``{query}`` gets the query, ``{candidates}`` the numbered passages ``1. …``.

    Pure: no retrieval, no truncation (see :func:`truncate_candidates`).

    :raises ConfigurationError: when `template` has no ``{query}`` placeholder.
    """
    if "{query}" not in template:
        raise ConfigurationError(
            f"template must contain the placeholder {{query}} (and usually {{candidates}}), got {template[:80]!r}"
        )
    numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(candidates, start=1)) or "(none)"
    # str.replace, not str.format: queries and passages may contain braces.
    return template.replace("{candidates}", numbered).replace("{query}", query)


def compose_query(query: str, answers: Sequence[str]) -> str:
    """The augmented query ``q a1 q a2 … q aN``: the query repeated before each answer keeps its weight.

    Empty answers are skipped; with none left the result is the query itself.
    """
    kept = [a.strip() for a in answers if a and a.strip()]
    if not kept:
        return query
    return " ".join(f"{query} {answer}" for answer in kept)


@dataclass
class AugmentedQuery:
    """The outcome of LameR's augmentation step.

    :param query: the original query.
    :param answers: the non-empty LLM answers (empty when it fell back).
    :param text: the query to retrieve with: ``q a1 … q aN``, or `query` when it fell back.
    :param fell_back: whether the LLM step failed and `text` is the original query.
    :param reason: why it fell back (`None` when it did not).
    :param candidates: the first-stage results shown to the LLM.
    :param cached: whether the answers came from the cache (no LLM call).
    :param prompt: the prompt sent (or that would have been sent).
    """

    query: str
    answers: list[str]
    text: str
    fell_back: bool = False
    reason: str | None = None
    candidates: list[ScoredDocument] = field(default_factory=list)
    cached: bool = False
    prompt: str = ""


@dataclass
class LameRStats:
    """Running totals for cost reporting: `llm_calls` counts `generate` calls made (cache misses)."""

    queries: int = 0
    llm_calls: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    llm_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LameRRetriever:
    """Retrieve, let the LLM answer from the candidates, retrieve again with ``q a1 q a2 … q aN``.

    Implements the :class:`~lens_rag.retrieval.Retriever` protocol, so it can itself be fused or reranked.

    :param first_stage: retrieves the candidates shown to the LLM.
    :param llm: any :class:`~lens_rag.llm.base.LLMClient`; swap in a stronger model here.
    :param second_stage: retrieves with the augmented query; `None` reuses `first_stage`.
    :param n_candidates: M, how many first-stage passages the prompt enumerates (0 = none, HyDE-like).
    :param n_answers: N, how many answers to sample.
    :param temperature: sampling temperature (the paper samples at 1.0).
    :param max_tokens: most tokens per answer.
    :param template: a prompt with ``{query}`` and ``{candidates}``; `None` uses the `domain` template.
    :param domain: ``"default"``, ``"scientific"``, ``"counter-argument"`` or ``"finance"`` (or an alias
        from :data:`DOMAIN_ALIASES` such as ``"scifact"``).
    :param candidate_token_budget: the most tokens (approx.) all candidates together may take in the prompt;
        keep prompt + ``max_tokens`` inside the model's context (2,048 for the local server).
    :param cache: `None`/`True`: an in-memory :class:`~lens_rag.llm.base.LLMCache`; `False`: no cache; a path:
        an on-disk cache directory; or an `LLMCache` to share.
    :param name: this retriever's name in fused results.

    ``retrieve_async`` never blocks the event loop: the LLM is called with `generate_async`, its model name
    is looked up asynchronously, and an on-disk cache is read and written in a worker thread.
    ``to_config()`` nests the stages and the LLM client as their own configs (see :mod:`lens_rag.config`).
    """

    def __init__(
        self,
        first_stage: Retriever,
        llm: LLMClient,
        second_stage: Retriever | None = None,
        n_candidates: int = 10,
        n_answers: int = 5,
        temperature: float = 1.0,
        max_tokens: int = 128,
        template: str | None = None,
        domain: str = "default",
        candidate_token_budget: int = 1024,
        cache: LLMCache | str | os.PathLike[str] | bool | None = None,
        name: str = "lamer",
    ) -> None:
        if not isinstance(n_candidates, int) or n_candidates < 0:
            raise ConfigurationError(f"n_candidates must be an integer >= 0 (M, default 10), got {n_candidates!r}")
        if not isinstance(n_answers, int) or n_answers < 1:
            raise ConfigurationError(f"n_answers must be an integer >= 1 (N, default 5), got {n_answers!r}")
        if temperature < 0:
            raise ConfigurationError(f"temperature must be >= 0 (the paper uses 1.0), got {temperature!r}")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be an integer >= 1 (default 128), got {max_tokens!r}")
        if not isinstance(candidate_token_budget, int) or candidate_token_budget < 1:
            raise ConfigurationError(
                f"candidate_token_budget must be an integer >= 1 (default 1024), got {candidate_token_budget!r}"
            )
        resolved_domain = DOMAIN_ALIASES.get(domain, domain)
        if template is None and resolved_domain not in LAMER_TEMPLATES:
            raise ConfigurationError(
                f"domain is {domain!r}; use one of {', '.join(LAMER_TEMPLATES)} "
                f"(or an alias: {', '.join(DOMAIN_ALIASES)}), or pass template="
            )
        self.template = template if template is not None else LAMER_TEMPLATES[resolved_domain]
        if "{query}" not in self.template:
            raise ConfigurationError(f"template must contain {{query}} (and usually {{candidates}}), got {template!r}")
        self.first_stage = first_stage
        self.second_stage = second_stage if second_stage is not None else first_stage
        self.llm = llm
        self.n_candidates = n_candidates
        self.n_answers = n_answers
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.domain = resolved_domain
        self.candidate_token_budget = candidate_token_budget
        if cache is None or cache is True:
            self.cache: LLMCache | None = LLMCache()
        elif cache is False:
            self.cache = None
        elif isinstance(cache, LLMCache):
            self.cache = cache
        else:
            self.cache = LLMCache(cache)
        self.name = name
        self.stats = LameRStats()

    # -- the augmentation step ---------------------------------------------------------------------

    def prompt_for(self, query: str, candidates: Sequence[ScoredDocument]) -> str:
        """The prompt LameR sends for `query` and these first-stage results (candidates truncated to the budget)."""
        texts = truncate_candidates([passage_text(c) for c in candidates], self.candidate_token_budget)
        return build_prompt(query, texts, self.template)

    def _cache_key(self, prompt: str, model: str) -> str:
        return prompt_key(model, prompt, self.n_answers, self.temperature, self.max_tokens)

    def _fallback(self, query: str, candidates: list[ScoredDocument], prompt: str, reason: str) -> AugmentedQuery:
        self.stats.fallbacks += 1
        message = f"LameR fell back to the original query for {query[:80]!r}: {reason}"
        logger.warning("%s", message)
        warnings.warn(message, LLMFallbackWarning, stacklevel=3)
        return AugmentedQuery(query, [], query, fell_back=True, reason=reason, candidates=candidates, prompt=prompt)

    def _finish(
        self, query: str, candidates: list[ScoredDocument], prompt: str, outputs: list[str], cached: bool
    ) -> AugmentedQuery:
        answers = [_SPACES.sub(" ", o).strip() for o in outputs]
        answers = [a for a in answers if a]
        if not answers:
            return self._fallback(query, candidates, prompt, f"the LLM returned {len(outputs)} empty answer(s)")
        return AugmentedQuery(
            query, answers, compose_query(query, answers), candidates=candidates, cached=cached, prompt=prompt
        )

    def _lookup(self, prompt: str, model: str) -> tuple[str | None, list[str] | None]:
        if self.cache is None:
            return None, None
        key = self._cache_key(prompt, model)
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
        return key, hit

    async def _lookup_async(self, prompt: str, model: str) -> tuple[str | None, list[str] | None]:
        if self.cache is not None and self.cache.directory is not None:  # a file read: off the event loop
            return await asyncio.to_thread(self._lookup, prompt, model)
        return self._lookup(prompt, model)

    def _store(self, key: str | None, prompt: str, outputs: list[str], model: str) -> None:
        if self.cache is not None and key is not None and any(o.strip() for o in outputs):
            self.cache.put(
                key,
                outputs,
                model=model,
                prompt=prompt,
                n=self.n_answers,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
            )

    def augment_from(self, query: str, candidates: Sequence[ScoredDocument]) -> AugmentedQuery:
        """Augment `query` given first-stage `candidates` (no retrieval here)."""
        candidates = list(candidates)[: self.n_candidates]
        prompt = self.prompt_for(query, candidates)
        try:
            model = self.llm.model
            key, outputs = self._lookup(prompt, model)
            if outputs is not None:
                return self._finish(query, candidates, prompt, outputs, cached=True)
            start = time.perf_counter()
            self.stats.llm_calls += 1
            try:
                outputs = self.llm.generate(
                    prompt, n=self.n_answers, temperature=self.temperature, max_tokens=self.max_tokens
                )
            finally:
                self.stats.llm_seconds += time.perf_counter() - start
        except (LLMError, TimeoutError, ConnectionError) as e:
            return self._fallback(query, candidates, prompt, f"{type(e).__name__}: {e}")
        self._store(key, prompt, outputs, model)
        return self._finish(query, candidates, prompt, outputs, cached=False)

    async def augment_from_async(self, query: str, candidates: Sequence[ScoredDocument]) -> AugmentedQuery:
        """The async twin of :meth:`augment_from`."""
        candidates = list(candidates)[: self.n_candidates]
        prompt = self.prompt_for(query, candidates)
        try:
            model = await model_name_async(self.llm)
            key, outputs = await self._lookup_async(prompt, model)
            if outputs is not None:
                return self._finish(query, candidates, prompt, outputs, cached=True)
            start = time.perf_counter()
            self.stats.llm_calls += 1
            try:
                outputs = await self.llm.generate_async(
                    prompt, n=self.n_answers, temperature=self.temperature, max_tokens=self.max_tokens
                )
            finally:
                self.stats.llm_seconds += time.perf_counter() - start
        except (LLMError, TimeoutError, ConnectionError) as e:
            return self._fallback(query, candidates, prompt, f"{type(e).__name__}: {e}")
        if self.cache is not None and self.cache.directory is not None:
            await asyncio.to_thread(self._store, key, prompt, outputs, model)
        else:
            self._store(key, prompt, outputs, model)
        return self._finish(query, candidates, prompt, outputs, cached=False)

    def augment(self, query: str, filters: Filters | None = None) -> AugmentedQuery:
        """Run the first stage and the LLM: the augmented query, or the original one with `fell_back=True`."""
        candidates = (
            self.first_stage.retrieve(query, top_k=self.n_candidates, filters=filters) if self.n_candidates else []
        )
        return self.augment_from(query, candidates)

    async def augment_async(self, query: str, filters: Filters | None = None) -> AugmentedQuery:
        """The async twin of :meth:`augment`."""
        candidates = (
            await self.first_stage.retrieve_async(query, top_k=self.n_candidates, filters=filters)
            if self.n_candidates
            else []
        )
        return await self.augment_from_async(query, candidates)

    # -- the Retriever protocol --------------------------------------------------------------------

    def _check_top_k(self, top_k: int) -> None:
        if not isinstance(top_k, int) or top_k < 0:
            raise ConfigurationError(f"top_k must be an integer >= 0, got {top_k!r}")

    def _reuse_first_stage(self, augmented: AugmentedQuery, top_k: int) -> list[ScoredDocument] | None:
        # On fallback with the same retriever in both stages, the first-stage results already are the answer.
        if augmented.fell_back and self.second_stage is self.first_stage and top_k <= self.n_candidates:
            return augmented.candidates[:top_k]
        return None

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        """LameR retrieval: first stage → LLM answers → second stage with ``q a1 … q aN``.

        :param query: the user's question.
        :param top_k: how many results to return (candidate depth is `n_candidates`, set on the retriever).
        :param filters: metadata filters, applied in both stages.
        """
        self._check_top_k(top_k)
        self.stats.queries += 1
        augmented = self.augment(query, filters=filters)
        reused = self._reuse_first_stage(augmented, top_k)
        if reused is not None:
            return reused
        return self.second_stage.retrieve(augmented.text, top_k=top_k, filters=filters)

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        """The async twin of :meth:`retrieve` (same arguments and results), using `generate_async`."""
        self._check_top_k(top_k)
        self.stats.queries += 1
        augmented = await self.augment_async(query, filters=filters)
        reused = self._reuse_first_stage(augmented, top_k)
        if reused is not None:
            return reused
        return await self.second_stage.retrieve_async(augmented.text, top_k=top_k, filters=filters)

    # -- configuration -----------------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """JSON-only configuration; the stages and the LLM client are nested as their own configs.

        ``second_stage`` is `None` when it is the first stage; ``template`` is `None` when it is the
        domain's; ``cache`` is `False` (none), `True` (in memory) or the cache directory.
        """
        from lens_rag.config import to_config

        if self.cache is None:
            cache: bool | str = False
        elif self.cache.directory is None:
            cache = True
        else:
            cache = str(self.cache.directory)
        return {
            "type": "lamer_retriever",
            "first_stage": to_config(self.first_stage),
            "second_stage": None if self.second_stage is self.first_stage else to_config(self.second_stage),
            "llm": to_config(self.llm),
            "n_candidates": self.n_candidates,
            "n_answers": self.n_answers,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "template": None if self.template == LAMER_TEMPLATES.get(self.domain) else self.template,
            "domain": self.domain,
            "candidate_token_budget": self.candidate_token_budget,
            "cache": cache,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LameRRetriever:
        """Rebuild from :meth:`to_config` output (``first_stage`` and ``llm`` are required).

        :raises ConfigurationError: on unknown or missing keys.
        """
        from lens_rag.config import config_params, from_config, shared_instances

        allowed = (
            "first_stage", "second_stage", "llm", "n_candidates", "n_answers", "temperature", "max_tokens",
            "template", "domain", "candidate_token_budget", "cache", "name",
        )  # fmt: skip
        params = config_params(config, cls.__name__, allowed, ("first_stage", "llm"))
        with shared_instances():
            first = from_config(params.pop("first_stage"))
            second_config = params.pop("second_stage", None)
            second = None if second_config is None else from_config(second_config)
            return cls(first, from_config(params.pop("llm")), second_stage=second, **params)

    def __repr__(self) -> str:
        return (
            f"LameRRetriever(first_stage={getattr(self.first_stage, 'name', self.first_stage)!r}, "
            f"second_stage={getattr(self.second_stage, 'name', self.second_stage)!r}, llm={self.llm!r}, "
            f"n_candidates={self.n_candidates}, n_answers={self.n_answers})"
        )
