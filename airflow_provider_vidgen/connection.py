"""Reading a ``vidgen`` Airflow connection into plain settings (shared by the hook and the trigger)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_vidgen import __version__, _compat
from airflow_provider_vidgen.connection_form import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_BASE_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_TIMEOUT,
    PRODUCTION_BASE_URL,
)
from airflow_provider_vidgen.exceptions import VidgenConfigError

USER_AGENT = f"airflow-provider-vidgen/{__version__}"


def is_loopback(hostname: str | None) -> bool:
    """Whether ``hostname`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if not hostname:
        return False
    if hostname.lower() == "localhost" or hostname.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(host: str | None, conn_id: str) -> str:
    """The API base URL from a connection's host field.

    Empty means the production API. A host without a scheme gets ``https://``. Plain ``http://`` is
    accepted only for loopback hosts, so the API key never travels in clear text.
    """
    raw = (host or "").strip()
    if not raw:
        return PRODUCTION_BASE_URL
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise VidgenConfigError(
            f"Connection {conn_id!r}: Base URL (host) must be an https:// URL, got scheme {scheme!r}"
        )
    if scheme == "http" and not is_loopback(parts.hostname):
        raise VidgenConfigError(
            f"Connection {conn_id!r}: Base URL uses plain http:// to a non-loopback host "
            f"({parts.hostname}); use https:// so the API key is not sent in clear text"
        )
    return raw.rstrip("/")


def _host_with_port_and_path(conn: Any) -> str | None:
    """The host field, completed with the port and schema (path) fields of a URI-style connection."""
    host = (conn.host or "").strip()
    if not host or "://" in host:
        return host
    port = getattr(conn, "port", None)
    if port and ":" not in host.split("/", 1)[0]:
        head, _, tail = host.partition("/")
        host = f"{head}:{port}" + (f"/{tail}" if tail else "")
    schema = (getattr(conn, "schema", None) or "").strip("/")
    if schema and "/" not in host:
        host = f"{host}/{schema}"
    return host


def _number(extra: dict[str, Any], name: str, default: float, conn_id: str, minimum: float) -> float:
    value = extra.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VidgenConfigError(f"Connection {conn_id!r}: extra {name!r} must be a number, got {value!r}") from None
    if number < minimum:
        raise VidgenConfigError(f"Connection {conn_id!r}: extra {name!r} must be >= {minimum:g}, got {value!r}")
    return number


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything the provider needs from a ``vidgen`` connection.

    :param conn_id: The connection id (for messages).
    :param base_url: API base URL without trailing slash.
    :param api_key: The bearer key. Never logged; ``repr`` hides it.
    :param timeout: Read timeout of one request, seconds.
    :param connect_timeout: Connect timeout of one request, seconds.
    :param max_retries: Retries of one request after a retryable failure (0 = no retry).
    :param retry_base_delay: First backoff delay, seconds (doubles each retry, with jitter).
    :param retry_max_delay: Longest backoff delay, seconds.
    """

    conn_id: str
    base_url: str
    api_key: str
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_base_delay: float = DEFAULT_RETRY_BASE_DELAY
    retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY

    def __repr__(self) -> str:
        return f"ConnectionSettings(conn_id={self.conn_id!r}, base_url={self.base_url!r}, api_key='***')"

    @classmethod
    def from_connection(cls, conn: Any, **overrides: Any) -> ConnectionSettings:
        """Build settings from an Airflow ``Connection``; ``overrides`` (not ``None``) win over extras.

        The key is registered with Airflow's secrets masker (``mask_secret``).

        :param conn: The Airflow connection object.
        :param overrides: ``timeout``, ``connect_timeout``, ``max_retries``, ``retry_base_delay``,
            ``retry_max_delay`` given in code.
        """
        conn_id = conn.conn_id
        api_key = (conn.password or "").strip()
        if not api_key:
            raise VidgenConfigError(
                f"Connection {conn_id!r} has no API key: put the key in the connection's password field"
            )
        if any(ch.isspace() or not ch.isprintable() for ch in api_key):
            # Such a key cannot go in an HTTP header; say so without echoing it.
            raise VidgenConfigError(f"Connection {conn_id!r}: the API key contains whitespace or control characters")
        # Registered with Airflow's secrets masker wherever settings are read (the hook in a worker,
        # the trigger in the triggerer), so Airflow masks the key in every log line too.
        _compat.mask_secret(api_key)
        extra = conn.extra_dejson or {}
        values: dict[str, Any] = {
            "timeout": _number(extra, "timeout", DEFAULT_TIMEOUT, conn_id, 0.001),
            "connect_timeout": _number(extra, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, conn_id, 0.001),
            "max_retries": int(_number(extra, "max_retries", DEFAULT_MAX_RETRIES, conn_id, 0)),
            "retry_base_delay": _number(extra, "retry_base_delay", DEFAULT_RETRY_BASE_DELAY, conn_id, 0),
            "retry_max_delay": _number(extra, "retry_max_delay", DEFAULT_RETRY_MAX_DELAY, conn_id, 0),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(
            conn_id=conn_id,
            base_url=normalize_base_url(_host_with_port_and_path(conn), conn_id),
            api_key=api_key,
            **values,
        )

    def headers(self) -> dict[str, str]:
        """Request headers for API calls (bearer key, JSON, User-Agent)."""
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
