"""Recorded runs in an Airflow 3 metadata database, as the provider's tasks leave them.

Used by the Videos page tests and its benchmark: DAG runs, task instances and the manifest XComs of
``VideoDownloadOperator`` (``return_value``) and of the create operators (``output``), plus XComs of
other tasks that the index must ignore.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection, Engine

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
#: What another task returns: a dict with a "uri", that the index must not take for a saved video.
NOT_A_VIDEO = {"uri": "file:///etc/passwd", "generation_id": "not-a-video"}


def airflow_tables(engine: Engine) -> None:
    """Create the three Airflow tables the index reads (dag_run, task_instance, xcom)."""
    from airflow.models import import_all_models
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    import_all_models()  # the foreign keys name the other tables
    tables = [DagRun.__table__, TaskInstance.__table__, XComModel.__table__]
    DagRun.metadata.create_all(engine, tables=tables, checkfirst=True)


def manifest(uri: str, generation_id: str, model: str = "videos", size: int = 1234) -> dict[str, Any]:
    """A manifest as ``VideoSaver.save`` returns it."""
    return {
        "generation_id": generation_id,
        "uri": uri,
        "bytes": size,
        "sha256": hashlib.sha256(uri.encode()).hexdigest(),
        "content_type": "video/mp4",
        "actual_duration": 5.0,
        "model": model,
    }


def add_run(
    connection: Connection,
    *,
    run_pk: int,
    dag_id: str,
    when: datetime,
    videos: list[tuple[str, str, dict[str, Any]]],
    state: str = "success",
    other_xcoms: int = 1,
) -> None:
    """One DAG run; ``videos`` = ``(task_id, operator, manifest)``: a download task's manifest is its
    ``return_value``, a create operator's its ``output``; ``other_xcoms`` tasks return other dicts."""
    add_many(connection, [(run_pk, dag_id, when, videos, state, other_xcoms)])


def add_many(connection: Connection, runs: list[tuple[int, str, datetime, list[Any], str, int]]) -> None:
    """Several runs at once (one ``executemany`` per table): ``(run_pk, dag_id, when, videos, state, others)``."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    dag_runs: list[dict[str, Any]] = []
    task_instances: list[dict[str, Any]] = []
    xcoms: list[dict[str, Any]] = []
    for run_pk, dag_id, when, videos, state, others in runs:
        run_id = f"manual__{when.isoformat()}_{run_pk}"
        dag_runs.append(
            {"id": run_pk, "dag_id": dag_id, "run_id": run_id, "run_type": "manual", "state": state,
             "updated_at": when, "run_after": when, "log_template_id": None}
        )  # fmt: skip
        tasks = list(videos)
        for n in range(others):
            tasks.append(
                (f"report_{n}", "PythonOperator", {"uri": "file:///etc/passwd", "generation_id": "not-a-video"})
            )
        for task_id, operator, value in tasks:
            task_instances.append(
                {"task_id": task_id, "dag_id": dag_id, "run_id": run_id, "map_index": -1, "pool": "default_pool",
                 "operator": operator, "state": "success"}
            )  # fmt: skip
            key = "output" if operator in ("VideosCreateOperator", "StarVideosCreateOperator") else "return_value"
            base = {"dag_run_id": run_pk, "task_id": task_id, "map_index": -1, "dag_id": dag_id, "run_id": run_id}
            xcoms.append({**base, "key": key, "value": value, "timestamp": when})
            if key == "output":
                xcoms.append({**base, "key": "return_value", "value": value["generation_id"], "timestamp": when})
    connection.execute(insert(DagRun.__table__), dag_runs)
    connection.execute(insert(TaskInstance.__table__), task_instances)
    connection.execute(insert(XComModel.__table__), xcoms)


def add_runs(
    engine: Engine,
    count: int,
    *,
    dag_ids: list[str],
    first_pk: int = 1,
    root: str = "file:///videos",
    other_xcoms: int | None = None,
) -> None:
    """``count`` runs (one saved video each, newest last), spread over ``dag_ids``, one minute apart.

    :param other_xcoms: XComs of other tasks per run (default: one in every tenth run).
    """
    runs = []
    for n in range(count):
        dag_id = dag_ids[n % len(dag_ids)]
        operator = "VideoDownloadOperator" if n % 2 else "StarVideosCreateOperator"
        model = "videos" if n % 2 else "starvideos_v3"
        video = (f"save_{n % 3}", operator, manifest(f"{root}/{dag_id}/{n}.mp4", f"gen-{n}", model))
        others = other_xcoms if other_xcoms is not None else int(n % 10 == 0)
        runs.append((first_pk + n, dag_id, T0 + timedelta(minutes=first_pk + n), [video], "success", others))
    with engine.begin() as connection:
        for start in range(0, len(runs), 1000):
            add_many(connection, runs[start : start + 1000])
