"""Read what an ``airflow dags test`` run left in its SQLite metadata database.

Used by the end-to-end tests and the demo to show XComs without going through Airflow's ORM, whose
models differ between Airflow 2 and 3. XCom values are JSON on both (bytes on 2, text on 3).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


def _load(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode()
    if isinstance(value, str):
        return json.loads(value)
    return value


def latest_run(db_path: str | Path, dag_id: str) -> tuple[str, str]:
    """``(run_id, state)`` of the newest run of ``dag_id``."""
    with sqlite3.connect(str(db_path)) as db:
        row = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
    if row is None:
        raise LookupError(f"no run of {dag_id} in {db_path}")
    return row[0], row[1]


def run_xcoms(db_path: str | Path, dag_id: str, run_id: str) -> dict[tuple[str, int, str], Any]:
    """All XComs of one run, keyed by ``(task_id, map_index, key)``."""
    with sqlite3.connect(str(db_path)) as db:
        rows = db.execute(
            'SELECT task_id, map_index, "key", value FROM xcom WHERE dag_id = ? AND run_id = ?',
            (dag_id, run_id),
        ).fetchall()
    return {(task_id, map_index, key): _load(value) for task_id, map_index, key, value in rows}


def task_states(db_path: str | Path, dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str, int]]:
    """``(state, try_number)`` of each task instance of one run, keyed by ``(task_id, map_index)``."""
    with sqlite3.connect(str(db_path)) as db:
        rows = db.execute(
            "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        ).fetchall()
    return {(task_id, map_index): (state, try_number) for task_id, map_index, state, try_number in rows}


def asset_events(db_path: str | Path, dag_id: str, run_id: str) -> list[tuple[str, Any]]:
    """``(source_task_id, extra)`` of the asset events (dataset events on Airflow 2) a run emitted."""
    with sqlite3.connect(str(db_path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        table = "asset_event" if "asset_event" in tables else "dataset_event"
        rows = db.execute(
            f"SELECT source_task_id, extra FROM {table} WHERE source_dag_id = ? AND source_run_id = ? ORDER BY id",  # noqa: S608
            (dag_id, run_id),
        ).fetchall()
    return [(task_id, _load(extra)) for task_id, extra in rows]
