"""Connection settings for Elasticsearch: URL and credentials from arguments or the environment.

Secrets (API key, password) are kept out of `repr`, logs and error messages. Clients are built
lazily by the store; nothing here does I/O.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import elasticsearch

from lens_rag.errors import AuthenticationError, ConfigurationError, ConnectionFailedError, StoreError

__all__ = ["DEFAULT_URL", "ConnectionSettings", "parse_version", "redact_url"]

DEFAULT_URL = "http://localhost:9200"


def redact_url(url: str) -> str:
    """`url` without any `user:password@` part, safe to log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def parse_version(number: str) -> tuple[int, int, int]:
    """`"8.12.2"` → `(8, 12, 2)`; suffixes like `-SNAPSHOT` are ignored.

    :raises ConfigurationError: if `number` does not start with a dotted version.
    """
    head = number.split("-", 1)[0].split(".")
    try:
        parts = [int(p) for p in head[:3]]
    except ValueError as e:
        raise ConfigurationError(f"cannot parse Elasticsearch version {number!r}; expected e.g. '8.12.2'") from e
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to connect.

    :param url: cluster URL, e.g. ``http://127.0.0.1:9200`` or an Elastic Cloud endpoint.
    :param api_key: API key (the encoded form, or ``"id:key"``); takes precedence over basic auth.
    :param basic_auth: ``(username, password)``.
    :param ca_certs: path of a CA bundle for TLS.
    :param request_timeout: seconds per request.
    :param max_retries: transport retries on connection errors and 429/502/503/504.
    """

    url: str = field(default=DEFAULT_URL, repr=False)
    api_key: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    ca_certs: str | None = None
    request_timeout: float = 30.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in ("http", "https"):
            raise ConfigurationError(
                f"url={redact_url(self.url)!r} is not an http(s) URL; pass e.g. url='http://127.0.0.1:9200'"
            )
        if self.request_timeout <= 0:
            raise ConfigurationError(f"request_timeout must be > 0 seconds, got {self.request_timeout}")
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {self.max_retries}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConnectionSettings:
        """Read ES_URL, ES_API_KEY, ES_USERNAME/ES_PASSWORD and ES_CA_CERTS; overrides that are not None win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {"url": env.get("ES_URL") or DEFAULT_URL}
        if env.get("ES_API_KEY"):
            values["api_key"] = env["ES_API_KEY"]
        if env.get("ES_USERNAME"):
            values["basic_auth"] = (env["ES_USERNAME"], env.get("ES_PASSWORD", ""))
        if env.get("ES_CA_CERTS"):
            values["ca_certs"] = env["ES_CA_CERTS"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __repr__(self) -> str:
        auth = "api_key" if self.api_key is not None else "basic_auth" if self.basic_auth is not None else None
        return f"ConnectionSettings(url={self.safe_url!r}, auth={auth!r}, ca_certs={self.ca_certs!r})"

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by `Elasticsearch` and `AsyncElasticsearch`."""
        kwargs: dict[str, Any] = {
            "hosts": [self.url],
            "request_timeout": self.request_timeout,
            "max_retries": self.max_retries,
            "retry_on_timeout": True,
            "retry_on_status": (429, 502, 503, 504),
        }
        if self.api_key is not None:
            key_id, sep, key = self.api_key.partition(":")
            kwargs["api_key"] = (key_id, key) if sep else self.api_key
        elif self.basic_auth is not None:
            kwargs["basic_auth"] = self.basic_auth
        if self.ca_certs is not None:
            kwargs["ca_certs"] = self.ca_certs
        return kwargs


def translate_error(error: Exception, settings: ConnectionSettings, action: str) -> Exception:
    """Map an `elasticsearch`/`elastic_transport` exception to lens-rag's hierarchy (no secrets in the message).

    :param error: the exception raised by the client.
    :param settings: the connection, for the (redacted) URL and retry count.
    :param action: what was being done, e.g. ``"search index 'docs'"``.
    :returns: a :class:`ConnectionFailedError`, :class:`AuthenticationError` (HTTP 401/403) or
        :class:`StoreError` to raise ``from error``.
    """

    if isinstance(error, (elasticsearch.ConnectionError, elasticsearch.ConnectionTimeout)):
        return ConnectionFailedError(
            f"could not {action}: Elasticsearch at {settings.safe_url} did not answer after "
            f"{settings.max_retries} retries ({type(error).__name__}). Check that the server is running "
            "(scripts/elasticsearch.sh status) and that ES_URL / url= points at it"
        )
    if isinstance(error, elasticsearch.ApiError):
        status = error.meta.status if error.meta is not None else "?"
        if status in (401, 403):
            return _auth_error(error, status, settings, action)
        return StoreError(
            f"could not {action}: Elasticsearch answered HTTP {status}: {error.message} {error.info!s:.500}"
        )
    return StoreError(f"could not {action}: {type(error).__name__}: {error}")


# --- authentication errors (es-ops) ----------------------------------------------------------------------------------
def _secrets(settings: ConnectionSettings) -> list[str]:
    """Every form of the configured secrets that could show up in a server's text (to redact it)."""
    found: list[str] = []
    if settings.api_key:
        found.append(settings.api_key)
        found.extend(part for part in settings.api_key.partition(":")[::2] if len(part) >= 8)
        try:
            decoded = base64.b64decode(settings.api_key, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            decoded = ""
        found.extend(part for part in decoded.partition(":")[::2] if len(part) >= 8)
    if settings.basic_auth is not None and settings.basic_auth[1]:
        found.append(settings.basic_auth[1])
    return sorted(set(found), key=len, reverse=True)


def _server_reason(error: elasticsearch.ApiError, settings: ConnectionSettings) -> str:
    """The server's own reason (``error.reason``), with any configured secret redacted, at most 300 characters."""
    info = error.info if isinstance(error.info, dict) else {}
    detail = info.get("error")
    reason = detail.get("reason") if isinstance(detail, dict) else None
    text = str(reason or error.message)
    for secret in _secrets(settings):
        text = text.replace(secret, "<redacted>")
    return text[:300]


def _auth_error(
    error: elasticsearch.ApiError, status: int, settings: ConnectionSettings, action: str
) -> AuthenticationError:
    """A clear :class:`AuthenticationError` for HTTP 401/403 that names what to check and never the secret."""
    where = f"Elasticsearch at {settings.safe_url}"
    reason = _server_reason(error, settings)
    if settings.api_key is not None:
        how = "the API key (api_key= or ES_API_KEY)"
        check = (
            "Check ES_API_KEY / api_key=: it must be the key's encoded form (or 'id:key') of a key created on "
            "this cluster that has not expired or been invalidated"
        )
    elif settings.basic_auth is not None:
        how = f"user {settings.basic_auth[0]!r} (basic_auth= or ES_USERNAME/ES_PASSWORD)"
        check = f"Check ES_USERNAME / ES_PASSWORD (basic_auth=): the password of user {settings.basic_auth[0]!r}"
    else:
        return AuthenticationError(
            f"could not {action}: {where} requires authentication and no credentials were given "
            f"(HTTP {status}: {reason}). Set ES_API_KEY, or ES_USERNAME and ES_PASSWORD "
            "(or pass api_key= / basic_auth=)"
        )
    if status == 403:
        return AuthenticationError(
            f"could not {action}: {where} authenticated {how} but refused the request for lack of privileges "
            f"(HTTP 403: {reason}). Grant that user or API key the index privileges it needs "
            "(e.g. create_index, write, read, view_index_metadata, manage on the index)"
        )
    return AuthenticationError(f"could not {action}: {where} rejected {how} (HTTP 401: {reason}). {check}")
