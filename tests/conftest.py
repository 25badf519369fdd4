"""Shared fixtures. Airflow runs against a throw-away AIRFLOW_HOME; the API is the bundled emulator."""

from __future__ import annotations

import os
import tempfile

# Before anything imports Airflow: never touch the user's ~/airflow, never load Airflow's examples.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="vidgen-airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen.testing.airflow_db import latest_run, run_xcoms, task_states
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
def resume_on_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every outcome of a wait resumes the task on a worker, as on Airflow < 3.3 (no ``TaskSuccessEvent``)."""
    from airflow_provider_vidgen.triggers import vidgen as trigger_module

    monkeypatch.setattr(trigger_module, "ends_in_triggerer", lambda: False)


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


# -- end to end: `airflow dags test` in a subprocess against the emulator ---------------------------

SECRET_KEY = "sk-e2e-SECRET-9f8e7d6c"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass
class Run:
    """What one ``airflow dags test`` left behind."""

    returncode: int
    output: str
    run_id: str
    state: str
    xcom: dict[tuple[str, int, str], Any]
    tasks: dict[tuple[str, int], tuple[str, int]]

    @classmethod
    def read(cls, done: subprocess.CompletedProcess[str], airflow_home: Path, dag_id: str) -> Run:
        """What the newest run of ``dag_id`` left in ``airflow_home``'s database, with the command's output."""
        db = airflow_home / "airflow.db"
        run_id, state = latest_run(db, dag_id)
        return cls(
            done.returncode,
            done.stdout + done.stderr,
            run_id,
            state,
            run_xcoms(db, dag_id, run_id),
            task_states(db, dag_id, run_id),
        )


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite metadata database for the session's ``dags test`` runs."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return home


@pytest.fixture
def dags_test_in(airflow_home: Path, vidgen_emulator: Emulator):  # type: ignore[no-untyped-def]
    """``dags_test_in(folder)(dag_id, logical_date, **env)`` runs ``airflow dags test`` and reads the result."""
    emulator = vidgen_emulator
    emulator.api_key = SECRET_KEY

    def in_folder(dags_folder: Path, **extras: Any):  # type: ignore[no-untyped-def]
        def run(dag_id: str, logical_date: str = "2026-03-04", reserialize: bool = False, **env_extra: str) -> Run:
            env = {
                **os.environ,
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW_CONN_VIDGEN_DEFAULT": conn_json(emulator, **extras),
                "VIDGEN_EXAMPLE_POLL_INTERVAL": "0.2",
                **env_extra,
            }
            env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
            if reserialize:  # as a scheduler would: registers the DAGs' assets, so their events are kept
                subprocess.run([AIRFLOW, "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
            done = subprocess.run(
                [AIRFLOW, "dags", "test", dag_id, logical_date], env=env, capture_output=True, text=True, timeout=300
            )
            return Run.read(done, airflow_home, dag_id)

        return run

    yield in_folder
    emulator.api_key = "test-key"
