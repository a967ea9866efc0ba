"""LameR query augmentation as a Haystack component: first-stage documents in, the augmented query out."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.core.serialization import component_to_dict
from haystack_integrations.common.lens_rag.convert import to_scored
from haystack_integrations.common.lens_rag.llm import ChatGeneratorClient

from lens_rag.config import from_config
from lens_rag.errors import ConfigurationError
from lens_rag.lamer import LameRRetriever
from lens_rag.llm.base import LLMClient

__all__ = ["LensRagLameRQueryAugmenter"]


class _NoFirstStage:
    # The augmenter receives its candidates from the pipeline; core LameR's own first stage is never called.
    name = "pipeline"

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigurationError("LensRagLameRQueryAugmenter gets its candidates from the pipeline")

    retrieve_async = retrieve


@component
class LensRagLameRQueryAugmenter:
    """LameR (arXiv 2304.14233): the LLM answers the query from retrieved candidates; the answers expand the query.

    Connect a first-stage retriever's documents to `documents`, and `query` (``q a1 q a2 … q aN``) to a
    second-stage retriever. When the LLM fails or answers nothing, `query` is the original query and
    `fell_back` is true (a warning is logged): retrieval never breaks because of the LLM.

    :param chat_generator: any Haystack chat generator (e.g. `OpenAIChatGenerator`); or
    :param llm_config: a lens-rag LLM client config (e.g. ``{"type": "openai", "base_url": ...}``);
        with neither, lens-rag's default client is used (``LENS_RAG_LLM_URL`` or a local model).
    :param n_candidates: M, how many candidates the prompt lists (default 10).
    :param n_answers: N, how many answers to sample (default 5).
    :param temperature: sampling temperature (the paper: 1.0).
    :param max_tokens: most tokens per answer.
    :param domain: prompt template family: ``default``, ``scientific`` (alias ``scifact``), ``counter-argument``,
        ``finance``.
    :param template: a custom prompt with ``{query}`` and ``{candidates}`` (overrides `domain`).
    :param candidate_token_budget: most tokens all candidates together may take in the prompt.

    Usage::

        augmenter = LensRagLameRQueryAugmenter(chat_generator=OpenAIChatGenerator(api_base_url=url, model=m))
        pipeline.connect("bm25.documents", "lamer.documents")
        pipeline.connect("lamer.query", "second_bm25.query")
    """

    def __init__(
        self,
        chat_generator: Any = None,
        llm_config: dict[str, Any] | None = None,
        n_candidates: int = 10,
        n_answers: int = 5,
        temperature: float = 1.0,
        max_tokens: int = 128,
        domain: str = "default",
        template: str | None = None,
        candidate_token_budget: int = 1024,
    ) -> None:
        if chat_generator is not None and llm_config is not None:
            raise ConfigurationError("pass chat_generator or llm_config, not both")
        self.chat_generator = chat_generator
        self.llm_config = llm_config
        self.n_candidates = n_candidates
        self.n_answers = n_answers
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.domain = domain
        self.template = template
        self.candidate_token_budget = candidate_token_budget
        llm: LLMClient
        if chat_generator is not None:
            llm = ChatGeneratorClient(chat_generator)
        elif llm_config is not None:
            llm = from_config(llm_config)
        else:
            from lens_rag.llm.base import make_llm_client

            llm = make_llm_client()
        self.lamer = LameRRetriever(
            _NoFirstStage(),  # type: ignore[arg-type]
            llm,
            n_candidates=n_candidates,
            n_answers=n_answers,
            temperature=temperature,
            max_tokens=max_tokens,
            template=template,
            domain=domain,
            candidate_token_budget=candidate_token_budget,
        )

    def to_dict(self) -> dict[str, Any]:
        generator = component_to_dict(self.chat_generator, "chat_generator") if self.chat_generator else None
        return default_to_dict(
            self,
            chat_generator=generator,
            llm_config=self.llm_config,
            n_candidates=self.n_candidates,
            n_answers=self.n_answers,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            domain=self.domain,
            template=self.template,
            candidate_token_budget=self.candidate_token_budget,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagLameRQueryAugmenter:
        return default_from_dict(cls, data)  # the nested chat generator is rebuilt by its own from_dict

    def warm_up(self) -> None:
        """Warm up the chat generator, when it has a warm-up step."""
        if self.chat_generator is not None and hasattr(self.chat_generator, "warm_up"):
            self.chat_generator.warm_up()

    @staticmethod
    def _out(augmented: Any) -> dict[str, Any]:
        return {"query": augmented.text, "answers": augmented.answers, "fell_back": augmented.fell_back}

    @component.output_types(query=str, answers=list[str], fell_back=bool)
    def run(self, query: str, documents: list[Document]) -> dict[str, Any]:
        """Ask the LLM to answer `query` from `documents` and compose the augmented query.

        :param query: the user's query.
        :param documents: first-stage results, best first (the first `n_candidates` go in the prompt).
        :returns: ``query`` (augmented, or the original on fallback), ``answers``, ``fell_back``.
        """
        return self._out(self.lamer.augment_from(query, to_scored(documents)))

    @component.output_types(query=str, answers=list[str], fell_back=bool)
    async def run_async(self, query: str, documents: list[Document]) -> dict[str, Any]:
        """The async twin of :meth:`run` (the generator's `run_async`, or the core client's native async)."""
        return self._out(await self.lamer.augment_from_async(query, to_scored(documents)))
