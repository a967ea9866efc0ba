"""HTTP 401/403 from Elasticsearch become a clear `AuthenticationError` naming what to check, never the secret."""

from __future__ import annotations

import base64

import elasticsearch
import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

from lens_rag.errors import AuthenticationError, StoreError
from lens_rag.stores.elasticsearch.client import ConnectionSettings, translate_error

pytestmark = pytest.mark.unit

PASSWORD = "s3cret-Passw0rd-xyz"
KEY_ID, KEY_SECRET = "VUhWBaIBiDnMVdqHbQ6R", "k3y-s3cret-part-abcdef"
ENCODED_KEY = base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()


def _api_error(status: int, reason: str) -> elasticsearch.ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.01,
        node=NodeConfig("http", "127.0.0.1", 9200),
    )
    body = {"error": {"type": "security_exception", "reason": reason}, "status": status}
    cls = elasticsearch.AuthenticationException if status == 401 else elasticsearch.AuthorizationException
    return cls(message="security_exception", meta=meta, body=body)


def test_wrong_password_names_the_user_and_the_variables_not_the_password():
    settings = ConnectionSettings(url="http://127.0.0.1:9200", basic_auth=("elastic", PASSWORD))
    error = translate_error(_api_error(401, "unable to authenticate user [elastic]"), settings, "search index 'x'")
    assert isinstance(error, AuthenticationError) and isinstance(error, StoreError)
    message = str(error)
    assert message.startswith("could not search index 'x': Elasticsearch at http://127.0.0.1:9200 rejected user")
    assert "HTTP 401: unable to authenticate user [elastic]" in message
    assert "Check ES_USERNAME / ES_PASSWORD (basic_auth=)" in message
    assert PASSWORD not in message


def test_wrong_api_key_names_the_variable_and_redacts_an_echoed_key():
    settings = ConnectionSettings(url="http://127.0.0.1:9200", api_key=ENCODED_KEY)
    # A server (or proxy) echoing the credentials back must not put them in our message.
    echoed = f"bad key {ENCODED_KEY} with secret {KEY_SECRET}"
    message = str(translate_error(_api_error(401, echoed), settings, "count documents"))
    assert "rejected the API key (api_key= or ES_API_KEY)" in message and "Check ES_API_KEY" in message
    assert ENCODED_KEY not in message and KEY_SECRET not in message
    assert message.count("<redacted>") == 2


def test_id_colon_key_form_is_redacted_too():
    settings = ConnectionSettings(url="http://127.0.0.1:9200", api_key=f"{KEY_ID}:{KEY_SECRET}")
    message = str(translate_error(_api_error(401, f"key {KEY_SECRET}"), settings, "count documents"))
    assert KEY_SECRET not in message and "<redacted>" in message


def test_missing_credentials_and_missing_privileges():
    anonymous = ConnectionSettings(url="http://127.0.0.1:9200")
    message = str(translate_error(_api_error(401, "missing authentication credentials"), anonymous, "read"))
    assert "requires authentication and no credentials were given" in message
    assert "Set ES_API_KEY, or ES_USERNAME and ES_PASSWORD" in message

    settings = ConnectionSettings(url="http://127.0.0.1:9200", basic_auth=("reader", PASSWORD))
    forbidden = translate_error(_api_error(403, "action [indices:data/write/bulk] is unauthorized"), settings, "write")
    assert isinstance(forbidden, AuthenticationError)
    assert "authenticated user 'reader'" in str(forbidden) and "lack of privileges (HTTP 403" in str(forbidden)
    assert PASSWORD not in str(forbidden)


def test_other_api_errors_stay_store_errors():
    settings = ConnectionSettings(url="http://127.0.0.1:9200", basic_auth=("elastic", PASSWORD))
    meta = ApiResponseMeta(400, "1.1", HttpHeaders(), 0.01, NodeConfig("http", "127.0.0.1", 9200))
    error = translate_error(elasticsearch.BadRequestError("bad", meta, {"error": "x"}), settings, "search")
    assert type(error) is StoreError
