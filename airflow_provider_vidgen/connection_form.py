"""The ``vidgen`` connection's form and defaults, as plain data.

Imported by ``get_provider_info`` (on every Airflow start), so it imports nothing.
"""

from __future__ import annotations

from typing import Any

PRODUCTION_BASE_URL = "https://zcbservice.aizfw.cn/kyyReactApiServer"

#: Connection extras the provider reads, with their defaults.
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_BASE_DELAY = 1.0
DEFAULT_RETRY_MAX_DELAY = 60.0

#: Extras shown as form fields in the Airflow UI (``conn-fields``), with their JSON schema.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Request timeout (s)",
        "description": f"Read timeout of each API request in seconds. Default {DEFAULT_TIMEOUT:g}.",
        "schema": {"type": ["number", "null"], "minimum": 0.001},
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "description": f"Timeout to open a connection, seconds. Default {DEFAULT_CONNECT_TIMEOUT:g}.",
        "schema": {"type": ["number", "null"], "minimum": 0.001},
    },
    "max_retries": {
        "label": "Max retries per request",
        "description": (
            f"Retries of a status read after a transient error (connection, timeout, 429, 5xx); creates "
            f"are retried only when no task can have been created. Default {DEFAULT_MAX_RETRIES}."
        ),
        "schema": {"type": ["integer", "null"], "minimum": 0},
    },
    "retry_base_delay": {
        "label": "Retry base delay (s)",
        "description": f"First backoff delay; doubles each retry, with jitter. Default {DEFAULT_RETRY_BASE_DELAY:g}.",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "retry_max_delay": {
        "label": "Retry max delay (s)",
        "description": (
            f"Longest backoff delay (a server's Retry-After may ask for more). Default {DEFAULT_RETRY_MAX_DELAY:g}."
        ),
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login", "schema", "port"],
    "relabeling": {"host": "Base URL", "password": "API key"},
    "placeholders": {
        "host": f"empty = production API ({PRODUCTION_BASE_URL}); https:// required (http:// only for localhost)",
        "password": "API key (sent as a Bearer token, only to the Base URL)",
    },
}
