"""ElasticsearchStore construction and configuration — no cluster, no connection."""

from __future__ import annotations

import socket

import pytest

from lens_rag.errors import ConfigurationError, ConnectionFailedError
from lens_rag.stores.base import AsyncStore, Store
from lens_rag.stores.elasticsearch import ConnectionSettings, ElasticsearchStore
from lens_rag.stores.elasticsearch.client import parse_version, redact_url

pytestmark = pytest.mark.unit


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_construction_does_no_io(no_network, monkeypatch):
    monkeypatch.delenv("ES_URL", raising=False)
    store = ElasticsearchStore("http://10.255.255.1:9", index="never", request_timeout=0.5)
    assert store._client is None and store._async_client is None
    store.close()  # closing an unused store does nothing
    for protocol in (Store, AsyncStore):  # checked on the class: isinstance() would read the `info` property (I/O)
        members = [name for name in dir(protocol) if not name.startswith("_")]
        assert members and all(hasattr(ElasticsearchStore, name) for name in members), protocol
    store2 = ElasticsearchStore.from_env(index="never")
    assert store2._client is None


def test_unreachable_server_raises_connection_failed():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ElasticsearchStore(f"http://127.0.0.1:{port}", index="x", max_retries=1, request_timeout=1)
    with pytest.raises(ConnectionFailedError, match=rf"127\.0\.0\.1:{port} did not answer after 1 retries"):
        store.count_documents()


def test_env_settings_and_secrets_stay_hidden(monkeypatch):
    monkeypatch.setenv("ES_URL", "https://user:hunter2@es.example:9243")
    monkeypatch.setenv("ES_API_KEY", "c2VjcmV0")
    monkeypatch.setenv("ES_CA_CERTS", "/tmp/ca.pem")
    store = ElasticsearchStore(index="docs")
    assert store.settings.api_key == "c2VjcmV0"
    assert store.settings.ca_certs == "/tmp/ca.pem"
    text = repr(store) + repr(store.settings)
    assert "hunter2" not in text and "c2VjcmV0" not in text
    assert "es.example:9243" in text
    kwargs = store.settings.client_kwargs()
    assert kwargs["api_key"] == "c2VjcmV0" and "basic_auth" not in kwargs
    explicit = ElasticsearchStore("http://other:9200", api_key="id:key")
    assert explicit.settings.url == "http://other:9200"
    assert explicit.settings.client_kwargs()["api_key"] == ("id", "key")


def test_basic_auth_from_env():
    s = ConnectionSettings.from_env({"ES_URL": "http://h:1", "ES_USERNAME": "elastic", "ES_PASSWORD": "pw"})
    assert s.client_kwargs()["basic_auth"] == ("elastic", "pw")
    assert ConnectionSettings.from_env({}).url == "http://localhost:9200"


def test_redact_and_version():
    assert redact_url("https://u:p@h:9200/x") == "https://h:9200/x"
    assert redact_url("http://h:9200") == "http://h:9200"
    assert parse_version("8.12.2") == (8, 12, 2)
    assert parse_version("9.1.0-SNAPSHOT") == (9, 1, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"index": "Bad Name"}, "index='Bad Name' is not a valid Elasticsearch index name"),
        ({"dense_similarity": "euclid"}, "dense_similarity must be one of"),
        ({"dense_dims": 5000}, "dense_dims must be between 1 and 4096"),
        ({"sparse_query_mode": "fast"}, "sparse_query_mode must be"),
        ({"sparse_top_k": 0}, "sparse_top_k must be >= 1"),
        ({"refresh": "sometimes"}, "refresh must be 'end', 'wait_for', 'none'"),
        ({"chunk_size": 0}, "chunk_size must be >= 1"),
        ({"url": "localhost:9200"}, "is not an http\\(s\\) URL"),
    ],
)
def test_invalid_configuration_is_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        ElasticsearchStore(**{"url": "http://h:9200", **kwargs})


def test_refresh_booleans_map_to_policies():
    assert ElasticsearchStore("http://h:1", refresh=True).refresh == "end"
    assert ElasticsearchStore("http://h:1", refresh=False).refresh == "none"


def test_to_config_is_json_without_secrets(no_network, monkeypatch, caplog):
    import json

    for name in ("ES_URL", "ES_API_KEY", "ES_USERNAME", "ES_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    store = ElasticsearchStore(
        "https://user:hunter2@es.example:9243", index="docs", api_key="s3cret-key", dense_dims=8, refresh="none"
    )
    with caplog.at_level("WARNING"):
        config = store.to_config()
    text = json.dumps(config)
    assert "s3cret-key" not in text and "hunter2" not in text and "hunter2" not in caplog.text
    assert "does not save credentials" in caplog.text
    assert config["type"] == "elasticsearch_store" and config["url"] == "https://es.example:9243"
    assert config["api_key_env"] == "ES_API_KEY" and config["refresh"] == "none" and config["dense_dims"] == 8
    monkeypatch.setenv("ES_API_KEY", "from-env")
    again = ElasticsearchStore.from_config(json.loads(text))
    assert again.settings.api_key == "from-env" and again._client is None  # nothing connects
    assert again.to_config() == config
    assert ElasticsearchStore(index="docs").to_config()["url"] is None  # from ES_URL: read again on load


def test_secrets_from_named_environment_variables(no_network, monkeypatch):
    monkeypatch.delenv("ES_API_KEY", raising=False)
    monkeypatch.setenv("TEAM_ES_USER", "elastic")
    monkeypatch.setenv("TEAM_ES_PASS", "pw")
    store = ElasticsearchStore.from_config(
        {"type": "elasticsearch_store", "index": "docs", "username_env": "TEAM_ES_USER", "password_env": "TEAM_ES_PASS"}
    )
    assert store.settings.basic_auth == ("elastic", "pw")
    assert store.to_config()["username_env"] == "TEAM_ES_USER"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "elasticsearch_store", "api_key": "x"}, r"unknown ElasticsearchStore config keys \['api_key'\]"),
        ({"type": "embedded_store", "index": "x"}, "got a config of type 'embedded_store'"),
        ({"type": "elasticsearch_store", "index": "Bad Name"}, "not a valid Elasticsearch index name"),
    ],
)
def test_from_config_refuses_bad_configs(no_network, config, message):
    with pytest.raises(ConfigurationError, match=message):
        ElasticsearchStore.from_config(config)


def test_filters_are_checked_before_any_request(no_network):
    store = ElasticsearchStore("http://10.255.255.1:9", index="never")
    with pytest.raises(ConfigurationError, match="unknown filter operator 'like'"):
        store.count_documents({"a": {"like": 1}})
    with pytest.raises(ConfigurationError, match="delete_by_filter needs a filter"):
        store.delete_by_filter(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="meta must be a mapping"):
        store.update_by_filter({"a": 1}, ["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="top_k must be"):
        store.search_bm25("q", top_k=-1)
    assert store.search_bm25("q", top_k=0) == []  # nothing to ask
