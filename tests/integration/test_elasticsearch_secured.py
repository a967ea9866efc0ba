"""ElasticsearchStore against a secured server: password and API key both work, a wrong secret fails clearly,
and no secret reaches any log record.

The secured node (security on, TLS off on loopback, generated password, API key made through the REST API)
comes from ``scripts/elasticsearch.sh start --secure --export-prefix LENS_RAG_SECURE_``, which `.ci/run` runs
beside the plain one; it sets LENS_RAG_SECURE_ES_URL, ..._ES_USERNAME, ..._ES_PASSWORD and ..._ES_API_KEY.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from lens_rag.documents import Document
from lens_rag.errors import AuthenticationError, StoreError
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch import ElasticsearchStore

pytestmark = pytest.mark.integration

DIMS = 8
LOGGERS = ("elasticsearch", "elastic_transport", "urllib3", "lens_rag")


@dataclass(frozen=True)
class Secured:
    url: str
    username: str
    password: str
    api_key: str

    def secret_forms(self) -> list[str]:
        """The secrets in every form a leak could take (raw, the Basic header value, the decoded key)."""
        forms = [self.password, self.api_key, base64.b64encode(f"{self.username}:{self.password}".encode()).decode()]
        try:
            _key_id, _, key = base64.b64decode(self.api_key, validate=True).decode().partition(":")
            forms.append(key)  # the id alone is not a secret; the key part is
        except ValueError:
            pass
        return [f for f in forms if f]


@pytest.fixture(scope="module")
def secured() -> Secured:
    names = ("URL", "USERNAME", "PASSWORD", "API_KEY")
    values = {n: os.environ.get(f"LENS_RAG_SECURE_ES_{n}", "") for n in names}
    missing = [f"LENS_RAG_SECURE_ES_{n}" for n, v in values.items() if not v]
    if missing:
        reason = (
            f"{', '.join(missing)} not set; start a secured node first: "
            'eval "$(scripts/elasticsearch.sh start --secure --export-prefix LENS_RAG_SECURE_)"'
        )
        if os.environ.get("LENS_RAG_REQUIRE_SERVICES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Secured(values["URL"], values["USERNAME"], values["PASSWORD"], values["API_KEY"])


def _corpus() -> list[Document]:
    rng = np.random.default_rng(11)
    words = ["aspirin", "fever", "protein", "vaccine", "virus", "heart"]
    return [
        Document(
            id=f"sec-{i}",
            content=f"{words[i % len(words)]} {words[(i + 2) % len(words)]} secured study {i}",
            meta={"i": i},
            embedding=rng.normal(size=DIMS).astype(np.float32).tolist(),
            sparse_embedding=SparseVector.from_arrays([i, 100 + i % 3], [1.0 + i, 0.5]),
        )
        for i in range(12)
    ]


@pytest.fixture
def index_name(secured: Secured) -> Iterator[str]:
    name = f"lens-rag-secured-{uuid.uuid4().hex[:10]}"
    yield name
    admin = ElasticsearchStore(secured.url, index=name, basic_auth=(secured.username, secured.password))
    admin.delete_index()
    admin.close()


def _no_secret(secret: str, text: str) -> None:
    """Fail if `secret` is in `text`, without printing the secret (pytest would show both operands)."""
    if secret in text:
        pytest.fail(f"a secret appeared in: {text.replace(secret, '<THE SECRET>')[:300]!r}")


def _write_and_search(store: ElasticsearchStore) -> None:
    docs = _corpus()
    assert store.write_documents(docs).written == len(docs)
    assert store.count_documents() == len(docs)
    assert store.search_bm25("aspirin", top_k=3)[0].document.content.startswith("aspirin")
    sparse = store.search_sparse(SparseVector.from_arrays([5], [1.0]), top_k=3)
    assert sparse[0].id == "sec-5"
    dense = store.search_dense(docs[7].embedding or [], top_k=3)
    assert dense[0].id == "sec-7"


def test_username_and_password_write_and_search(secured, index_name):
    store = ElasticsearchStore(
        secured.url, index=index_name, basic_auth=(secured.username, secured.password), progress=False
    )
    _write_and_search(store)
    store.close()


def test_api_key_writes_and_searches_sync_and_async(secured, index_name):
    store = ElasticsearchStore(secured.url, index=index_name, api_key=secured.api_key, progress=False)
    _write_and_search(store)

    async def search() -> list[str]:
        async with ElasticsearchStore(secured.url, index=index_name, api_key=secured.api_key) as s:
            return [h.id for h in await s.search_sparse_async(SparseVector.from_arrays([3], [1.0]), top_k=1)]

    assert asyncio.run(search()) == ["sec-3"]
    store.close()


def test_credentials_from_the_environment(secured, index_name, monkeypatch):
    for name in ("ES_API_KEY", "ES_USERNAME", "ES_PASSWORD", "ES_CA_CERTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ES_URL", secured.url)
    monkeypatch.setenv("ES_USERNAME", secured.username)
    monkeypatch.setenv("ES_PASSWORD", secured.password)
    by_password = ElasticsearchStore.from_env(index=index_name, progress=False)
    by_password.write_documents(_corpus()[:3])
    assert by_password.count_documents() == 3
    by_password.close()

    monkeypatch.delenv("ES_USERNAME")
    monkeypatch.delenv("ES_PASSWORD")
    monkeypatch.setenv("ES_API_KEY", secured.api_key)
    by_key = ElasticsearchStore.from_env(index=index_name, progress=False)
    assert by_key.count_documents() == 3
    assert "api_key" in repr(by_key.settings)
    _no_secret(secured.api_key, repr(by_key.settings))
    by_key.close()


def _wrong_key() -> str:
    """A well-formed encoded API key (id:key, base64) that this cluster never issued."""
    return base64.b64encode(f"{secrets.token_hex(10)}:{secrets.token_hex(11)}".encode()).decode()


def test_wrong_secrets_give_a_clear_authentication_error(secured, index_name):
    wrong_password = "wrong-" + secrets.token_hex(12)
    store = ElasticsearchStore(secured.url, index=index_name, basic_auth=(secured.username, wrong_password))
    with pytest.raises(AuthenticationError, match=r"rejected user 'elastic'.*HTTP 401.*ES_USERNAME / ES_PASSWORD") as e:
        store.search_bm25("aspirin")
    assert isinstance(e.value, StoreError)
    assert secured.url.split("//")[1] in str(e.value)
    for leaked in (wrong_password, secured.password, secured.api_key):
        _no_secret(leaked, str(e.value))

    wrong_key = _wrong_key()
    store = ElasticsearchStore(secured.url, index=index_name, api_key=wrong_key)
    with pytest.raises(AuthenticationError, match=r"rejected the API key.*HTTP 401.*Check ES_API_KEY") as e:
        store.write_documents(_corpus()[:1])
    _no_secret(wrong_key, str(e.value))
    _no_secret(base64.b64decode(wrong_key).decode().split(":")[1], str(e.value))

    anonymous = ElasticsearchStore(secured.url, index=index_name)
    with pytest.raises(
        AuthenticationError,
        match=r"requires authentication and no credentials were given.*Set ES_API_KEY, or ES_USERNAME",
    ):
        anonymous.count_documents()


def test_wrong_api_key_fails_clearly_in_async_code(secured, index_name):
    async def run() -> None:
        async with ElasticsearchStore(secured.url, index=index_name, api_key=_wrong_key()) as store:
            await store.search_bm25_async("aspirin")

    with pytest.raises(AuthenticationError, match=r"rejected the API key"):
        asyncio.run(run())


def test_no_secret_in_any_debug_log_record(secured, index_name, caplog):
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    wrong_password = "wrong-" + secrets.token_hex(12)
    wrong_key = _wrong_key()

    by_password = ElasticsearchStore(
        secured.url, index=index_name, basic_auth=(secured.username, secured.password), progress=False
    )
    _write_and_search(by_password)
    by_key = ElasticsearchStore(secured.url, index=index_name, api_key=secured.api_key, progress=False)
    by_key.search_bm25("fever")
    by_key.search_dense(_corpus()[1].embedding or [])

    async def async_calls() -> None:
        async with ElasticsearchStore(secured.url, index=index_name, api_key=secured.api_key) as store:
            await store.search_many_async([("bm25", "fever", 3), ("dense", _corpus()[2].embedding, 3)])
        async with ElasticsearchStore(secured.url, index=index_name, api_key=wrong_key) as store:
            with pytest.raises(AuthenticationError):
                await store.count_documents_async()

    asyncio.run(async_calls())
    failures = []
    for bad in (
        ElasticsearchStore(secured.url, index=index_name, basic_auth=(secured.username, wrong_password)),
        ElasticsearchStore(secured.url, index=index_name, api_key=wrong_key),
    ):
        with pytest.raises(AuthenticationError) as e:
            bad.search_bm25("fever")
        logging.getLogger("lens_rag.tests").error("search failed", exc_info=e.value)
        failures.append("".join(traceback.format_exception(e.value)))
        bad.close()
    by_password.close()
    by_key.close()

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [formatter.format(record) for record in caplog.records] + failures
    # The check must see what a leak would look like: request lines with their (hidden) auth headers.
    transport = [t for t in texts if t.startswith("elastic_transport") and "Authorization" in t]
    assert transport, "no elastic_transport DEBUG request records were captured; the check would be vacuous"
    wrong_forms = [wrong_password, wrong_key, base64.b64decode(wrong_key).decode().split(":")[1]]
    for secret in secured.secret_forms() + wrong_forms:
        leaks = [t.replace(secret, "<THE SECRET>")[:300] for t in texts if secret in t]
        assert not leaks, f"a secret appeared in {len(leaks)} log record(s), e.g. {leaks[0]!r}"
