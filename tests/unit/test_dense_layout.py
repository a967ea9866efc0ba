"""Which sentence-transformers model layouts the dense encoder runs through `transformers` directly (no model loads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lens_rag.encoders.dense import _Layout, _read_layout
from lens_rag.models import minilm_path

pytestmark = pytest.mark.unit

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
DENSE = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}


def _model(
    tmp_path: Path,
    modules: list[dict[str, Any]],
    pooling: dict[str, Any],
    sbert: dict[str, Any] | None = None,
    st_config: dict[str, Any] | None = None,
) -> Path:
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **pooling}))
    if sbert is not None:
        (tmp_path / "sentence_bert_config.json").write_text(json.dumps(sbert))
    if st_config is not None:
        (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return tmp_path


def test_packaged_minilm_layout() -> None:
    assert _read_layout(minilm_path()) == _Layout("mean", 256, False, True)


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        ({"pooling_mode_mean_tokens": True}, "mean"),
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
        ({"pooling_mode_max_tokens": True}, "max"),
        ({"pooling_mode_mean_sqrt_len_tokens": True}, "mean_sqrt_len"),
        ({"pooling_mode": "cls"}, "cls"),
        ({"pooling_mode": "mean_tokens"}, "mean"),
    ],
)
def test_supported_poolings(tmp_path: Path, pooling: dict[str, Any], expected: str) -> None:
    layout = _read_layout(_model(tmp_path, [TRANSFORMER, POOLING], pooling, {"max_seq_length": 128}))
    assert layout == _Layout(expected, 128, False, False)


@pytest.mark.parametrize(
    ("modules", "pooling", "sbert", "st_config"),
    [
        ([TRANSFORMER, POOLING, DENSE], {"pooling_mode_mean_tokens": True}, None, None),
        ([TRANSFORMER, POOLING, NORMALIZE, DENSE], {"pooling_mode_mean_tokens": True}, None, None),
        ([POOLING], {"pooling_mode_mean_tokens": True}, None, None),
        ([{**TRANSFORMER, "path": "0_Transformer"}, POOLING], {"pooling_mode_mean_tokens": True}, None, None),
        ([TRANSFORMER, POOLING], {"pooling_mode_weightedmean_tokens": True}, None, None),
        ([TRANSFORMER, POOLING], {"pooling_mode_lasttoken": True}, None, None),
        ([TRANSFORMER, POOLING], {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, None, None),
        ([TRANSFORMER, POOLING], {}, None, None),
        ([TRANSFORMER, POOLING], {"pooling_mode_mean_tokens": True}, {"model_args": {"trust_remote_code": True}}, None),
        ([TRANSFORMER, POOLING], {"pooling_mode_mean_tokens": True}, {"unknown_option": 1}, None),
        ([TRANSFORMER, POOLING], {"pooling_mode_mean_tokens": True}, None, {"default_prompt_name": "query"}),
    ],
    ids=[
        "dense",
        "normalize+dense",
        "no transformer",
        "transformer in subfolder",
        "weightedmean",
        "lasttoken",
        "two modes",
        "no mode",
        "model_args",
        "unknown sbert key",
        "default prompt",
    ],
)
def test_other_layouts_go_to_sentence_transformers(
    tmp_path: Path, modules: Any, pooling: Any, sbert: Any, st_config: Any
) -> None:
    assert _read_layout(_model(tmp_path, modules, pooling, sbert, st_config)) is None


def test_missing_or_broken_files(tmp_path: Path) -> None:
    assert _read_layout(tmp_path) is None  # no modules.json: a plain Hugging Face model
    (tmp_path / "modules.json").write_text("{not json")
    assert _read_layout(tmp_path) is None
    (tmp_path / "modules.json").write_text(json.dumps([TRANSFORMER, POOLING]))
    assert _read_layout(tmp_path) is None  # no pooling config
