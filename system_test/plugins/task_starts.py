"""Counts task-process starts in the system test's cluster: a listener Airflow calls in every task
process it starts (a try's first start, and each resume after a deferral), before the task runs.

Each start is one file in ``$VIDGEN_SYSTEM_STARTS`` (the runner reads the folder): its name is unique,
its content one JSON line ``dag_id, run_id, task_id, map_index, try_number, pid, time``. A file per
start needs no lock between the workers' processes. Without ``VIDGEN_SYSTEM_STARTS`` it does nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


def record_start(task_instance: Any, folder: str | None = None) -> Path | None:
    """Write one start of ``task_instance``'s process; returns the file (``None`` when not counting).

    :param task_instance: The task instance whose process starts.
    :param folder: Where to write (default: ``$VIDGEN_SYSTEM_STARTS``).
    """
    folder = folder or os.environ.get("VIDGEN_SYSTEM_STARTS")
    if not folder:
        return None
    record = {
        "dag_id": task_instance.dag_id,
        "run_id": task_instance.run_id,
        "task_id": task_instance.task_id,
        "map_index": task_instance.map_index,
        "try_number": task_instance.try_number,
        "pid": os.getpid(),
        "time": time.time(),
    }
    path = Path(folder) / f"{uuid.uuid4().hex}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record) + "\n")
    partial.rename(path)  # the runner never reads half a record
    return path


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    record_start(task_instance)


class TaskStartsPlugin(AirflowPlugin):
    """Registers this module as a listener."""

    name = "vidgen_system_task_starts"
    listeners: ClassVar[list[Any]] = [sys.modules[__name__]]
