"""Local generation with transformers from the packaged SmolLM2 GGUF (converted once, then cached as safetensors)."""

from __future__ import annotations

import pytest

from lens_rag.llm import TransformersClient

pytestmark = pytest.mark.integration


def test_one_short_generation_from_the_packaged_gguf():
    client = TransformersClient(seed=0)
    out = client.generate("What is the capital of France? Answer in one word.", n=2, temperature=1.0, max_tokens=8)
    assert len(out) == 2 and all(text.strip() for text in out)
    greedy = client.generate("What is the capital of France? Answer in one word.", max_tokens=8)
    assert "Paris" in greedy[0]
