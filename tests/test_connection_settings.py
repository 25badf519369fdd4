"""Reading the ``vidgen`` connection: base URL rules, API key, extras."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_vidgen.connection import ConnectionSettings, is_loopback, normalize_base_url
from airflow_provider_vidgen.connection_form import PRODUCTION_BASE_URL
from airflow_provider_vidgen.exceptions import VidgenConfigError


def conn(host: str | None = "https://api.example.com/base", password: str | None = "sk-secret", **extra: Any):
    return SimpleNamespace(conn_id="my_conn", host=host, password=password, extra_dejson=extra)


@pytest.mark.parametrize("host", [None, "", "   "])
def test_empty_host_means_production(host: str | None) -> None:
    assert normalize_base_url(host, "c") == PRODUCTION_BASE_URL


def test_https_kept_and_trailing_slash_dropped() -> None:
    assert normalize_base_url("https://api.example.com/base/", "c") == "https://api.example.com/base"


def test_host_without_scheme_gets_https() -> None:
    assert normalize_base_url("api.example.com/base", "c") == "https://api.example.com/base"


@pytest.mark.parametrize(
    "host", ["http://localhost:8080", "http://127.0.0.1:1/x", "http://127.5.6.7", "http://[::1]:80"]
)
def test_plain_http_allowed_for_loopback(host: str) -> None:
    assert normalize_base_url(host, "c") == host


@pytest.mark.parametrize("host", ["http://api.example.com", "http://10.0.0.1:8080", "http://192.168.1.1"])
def test_plain_http_refused_for_remote_hosts(host: str) -> None:
    with pytest.raises(VidgenConfigError, match="clear text"):
        normalize_base_url(host, "c")


def test_other_schemes_refused() -> None:
    with pytest.raises(VidgenConfigError, match="https"):
        normalize_base_url("ftp://api.example.com", "c")


def test_is_loopback() -> None:
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.1")
    assert not is_loopback("example.com")
    assert not is_loopback(None)


@pytest.mark.parametrize("password", [None, "", "  "])
def test_missing_key_names_the_connection(password: str | None) -> None:
    with pytest.raises(VidgenConfigError, match="'my_conn' has no API key"):
        ConnectionSettings.from_connection(conn(password=password))


def test_defaults_and_extras() -> None:
    settings = ConnectionSettings.from_connection(conn())
    assert settings.timeout == 60
    assert settings.max_retries == 5
    settings = ConnectionSettings.from_connection(conn(timeout="12.5", max_retries=2, retry_base_delay=0))
    assert (settings.timeout, settings.max_retries, settings.retry_base_delay) == (12.5, 2, 0)


def test_code_overrides_win() -> None:
    settings = ConnectionSettings.from_connection(conn(timeout=5), timeout=9, max_retries=None)
    assert settings.timeout == 9
    assert settings.max_retries == 5


@pytest.mark.parametrize(("name", "value"), [("timeout", "soon"), ("timeout", 0), ("max_retries", -1)])
def test_bad_extras_rejected(name: str, value: Any) -> None:
    with pytest.raises(VidgenConfigError, match=name):
        ConnectionSettings.from_connection(conn(**{name: value}))


def test_repr_hides_key() -> None:
    settings = ConnectionSettings.from_connection(conn())
    assert "sk-secret" not in repr(settings)
    assert "sk-secret" not in str(settings)
    assert settings.headers()["Authorization"] == "Bearer sk-secret"
    assert settings.headers()["User-Agent"].startswith("airflow-provider-vidgen/")
