"""`lens-rag serve` wiring: loopback detection, served methods, refused options (no server is started)."""

from __future__ import annotations

import pytest

from lens_rag.cli import build_parser
from lens_rag.errors import ConfigurationError
from lens_rag.serve.run import build_app_from_args, is_loopback, served_methods

pytestmark = pytest.mark.unit


HOSTS = [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("10.0.0.2", False),
         ("example.org", False)]  # fmt: skip


@pytest.mark.parametrize(("host", "loopback"), HOSTS)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_served_methods_follow_the_vectors_the_store_has() -> None:
    both = {"encoders": {"sparse": {}, "dense": {}}}
    assert served_methods("hybrid", None, both) == ["hybrid", "bm25", "sparse", "dense"]
    assert served_methods("bm25", None, {"encoders": {"dense": {}}}) == ["bm25", "dense"]
    assert served_methods("hybrid", "dense, bm25", both) == ["hybrid", "dense", "bm25"]
    with pytest.raises(ConfigurationError):
        served_methods("nope", None, both)


def test_defaults_bind_loopback_and_short_keys_are_refused() -> None:
    args = build_parser().parse_args(["serve", "--store", "somewhere"])
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 8000, None)
    args = build_parser().parse_args(["serve", "--store", "somewhere", "--api-key", "short"])
    with pytest.raises(ConfigurationError, match="shorter than 8"):
        build_app_from_args(args)
