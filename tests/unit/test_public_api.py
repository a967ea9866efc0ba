from __future__ import annotations

import subprocess
import sys

import pytest

import lens_rag

pytestmark = pytest.mark.unit


def test_every_name_in_all_resolves() -> None:
    for name in lens_rag.__all__:
        assert getattr(lens_rag, name) is not None, name


def test_import_is_light() -> None:
    code = "import sys, lens_rag; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lens_rag.nope  # noqa: B018
