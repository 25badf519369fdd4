"""Shared fixtures. Airflow runs against a throw-away AIRFLOW_HOME; the API is the bundled emulator."""

from __future__ import annotations

import os
import tempfile

# Before anything imports Airflow: never touch the user's ~/airflow, never load Airflow's examples.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="vidgen-airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"

from typing import Any

import pytest

from airflow_provider_vidgen.testing.emulator import Emulator

pytest_plugins = ["airflow_provider_vidgen.testing.pytest_plugin"]

CONN_ID = "vidgen_default"


def conn_json(emulator: Emulator, **extra: Any) -> str:
    """Connection JSON for the emulator, with fast retries unless told otherwise."""
    import json

    extras = {"retry_base_delay": 0.01, "retry_max_delay": 0.05, "timeout": 5, **extra}
    return json.dumps({"conn_type": "vidgen", "host": emulator.base_url, "password": emulator.api_key, "extra": extras})


@pytest.fixture
def emulator_conn(vidgen_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator, reachable through the ``vidgen_default`` connection (env var)."""
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(vidgen_emulator))
    return vidgen_emulator


class FakeTI:
    """Records what an operator pushes to XCom (the HTTP side is the real emulator)."""

    task_id = "task"
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int | None = None, **_: Any) -> Any:
        assert task_ids == self.task_id
        assert map_indexes == self.map_index
        return self.xcom.get(key)


@pytest.fixture
def context() -> dict[str, Any]:
    """A minimal task context for calling ``execute`` / ``poke`` directly."""
    return {"ti": FakeTI()}


@pytest.fixture
def log_text(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """A callable returning everything logged so far (stdlib logging on Airflow 2, structlog on 3)."""
    import logging

    caplog.set_level(logging.INFO)
    task_logger = logging.getLogger("airflow.task")
    propagate = task_logger.propagate
    task_logger.propagate = True  # Airflow 2 routes task logs to its own handler only

    def text() -> str:
        out, err = capsys.readouterr()
        text.seen += out + err  # type: ignore[attr-defined]
        return caplog.text + text.seen  # type: ignore[attr-defined]

    text.seen = ""  # type: ignore[attr-defined]
    yield text
    task_logger.propagate = propagate
