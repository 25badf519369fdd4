"""Worker task-process starts per wait, one task of each shape (see ``system_test/runner.py``).

Run without faults after the main run. Each prompt carries a marker the runner scripts to finish
after ``plan.STARTS_GENERATION``, so every wait is still running when it is first checked:

- ``submit`` creates without waiting; ``sensor`` waits on its id (a template, not a mapped argument)
  with ``VideoGenerationSensor(deferrable=True)``: the sensor-only shape;
- ``create_wait``: create, ``wait_for_completion=True``, ``deferrable=True``, no ``output_path``;
- ``create_save``: create, ``deferrable=True``, ``output_path``: waits and saves the video.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from system_test.plan import STARTS_MARKERS

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

OUTPUT = os.environ.get("VIDGEN_SYSTEM_OUTPUT") or (Path(tempfile.gettempdir()) / "vidgen-system").as_uri()
POLL = 3


def _prompt(task_id: str) -> str:
    return f"Task-process starts {STARTS_MARKERS[task_id]}: a lighthouse at dusk"


with DAG(
    dag_id="vidgen_system_starts",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["system-test"],
):
    submit = VideosCreateOperator(task_id="submit", prompt=_prompt("submit"), duration=5)
    sensor = VideoGenerationSensor(
        task_id="sensor",
        # map_indexes named: one XCom, which Airflow 3.3's triggerer can read (see the sensor's README)
        generation_id="{{ ti.xcom_pull(task_ids='submit', map_indexes=-1) }}",
        deferrable=True,
        poke_interval=POLL,
        timeout=300,
    )
    submit >> sensor
    VideosCreateOperator(
        task_id="create_wait",
        prompt=_prompt("create_wait"),
        duration=5,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL,
        timeout=300,
    )
    VideosCreateOperator(
        task_id="create_save",
        prompt=_prompt("create_save"),
        duration=5,
        deferrable=True,
        poll_interval=POLL,
        timeout=300,
        output_path=OUTPUT + "/starts/{{ ti.task_id }}.mp4",
    )
