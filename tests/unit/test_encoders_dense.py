"""Dense encoder wrapper: no loading at construction, configuration round trip, input checks."""

from __future__ import annotations

import json

import pytest

from lens_rag.encoders import DenseEncoder, SparseEncoder
from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
from lens_rag.encoders.lens import LENSEncoder
from lens_rag.encoders.mlm import MLMSparseEncoder
from lens_rag.errors import ConfigurationError

pytestmark = pytest.mark.unit


def test_construction_does_not_load():
    enc = SentenceTransformerDenseEncoder("/does/not/exist", query_prompt="query: ")
    assert enc._model is None and enc.name == "exist"


def test_config_round_trip():
    enc = SentenceTransformerDenseEncoder(query_prompt="query: ", document_prompt="passage: ", normalize=False)
    cfg = json.loads(json.dumps(enc.to_config()))
    assert SentenceTransformerDenseEncoder.from_config(cfg).to_config() == enc.to_config()


def test_bad_arguments():
    with pytest.raises(ConfigurationError, match="batch_size"):
        SentenceTransformerDenseEncoder(batch_size=0)
    with pytest.raises(ConfigurationError, match="query_prompt"):
        SentenceTransformerDenseEncoder(query_prompt=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"texts\[0\] is empty"):
        SentenceTransformerDenseEncoder("/does/not/exist").encode_documents([""])


def test_protocols():
    # isinstance() on DenseEncoder would evaluate the `dimension` property, which loads the model.
    for member in ("name", "warm_up", "encode_queries", "encode_documents"):
        assert hasattr(SentenceTransformerDenseEncoder("x"), member)
    assert isinstance(SentenceTransformerDenseEncoder.dimension, property) and hasattr(DenseEncoder, "dimension")
    assert isinstance(MLMSparseEncoder("x"), SparseEncoder)
    assert isinstance(LENSEncoder("x"), SparseEncoder)
