"""The system test's DAG: N mapped generations in a real cluster (see system_test/plan.py).

Configured by the environment the runner gives every Airflow component: ``VIDGEN_SYSTEM_N`` (the
number of generations) and ``VIDGEN_SYSTEM_OUTPUT`` (a ``file://`` folder for the videos).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow_provider_vidgen.operators.vidgen import (
    StarVideosCreateOperator,
    VideoDownloadOperator,
    VideosCreateOperator,
)
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from system_test.plan import by_task

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

N = int(os.environ.get("VIDGEN_SYSTEM_N", "40"))
OUTPUT = os.environ.get("VIDGEN_SYSTEM_OUTPUT") or (Path(tempfile.gettempdir()) / "vidgen-system").as_uri()
PLAN = by_task(N)
POLL = 5
DESTINATION = OUTPUT + "/{{ ds }}/{{ ti.task_id }}/{{ ti.map_index }}.mp4"

with DAG(
    dag_id="vidgen_system",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_tasks=500,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["system-test"],
):
    VideosCreateOperator.partial(
        task_id="videos",
        duration=5,
        deferrable=True,
        wait_for_completion=True,
        poll_interval=POLL,
        timeout=900,
        output_path=DESTINATION,
        if_output_exists="skip",
    ).expand(prompt=[item.prompt for item in PLAN["videos"]])

    StarVideosCreateOperator.partial(
        task_id="starvideos",
        duration=5,
        deferrable=True,
        wait_for_completion=True,
        poll_interval=POLL,
        timeout=900,
        output_path=DESTINATION,
        if_output_exists="skip",
    ).expand(prompt=[item.prompt for item in PLAN["starvideos"]])

    # The API fails these: the first try fails cleanly, its retry resubmits (a new, billed
    # generation, which fails too).
    VideosCreateOperator.partial(
        task_id="videos_fail",
        duration=5,
        deferrable=True,
        wait_for_completion=True,
        poll_interval=POLL,
        timeout=900,
        output_path=DESTINATION,
        if_output_exists="skip",
        retries=1,
    ).expand(prompt=[item.prompt for item in PLAN["videos_fail"]])

    submit = VideosCreateOperator.partial(task_id="submit", duration=5).expand(
        prompt=[item.prompt for item in PLAN["submit"]]
    )
    watch = VideoGenerationSensor.partial(task_id="watch", deferrable=True, poke_interval=POLL, timeout=900).expand(
        generation_id=submit.output
    )
    save = VideoDownloadOperator.partial(task_id="save", destination=DESTINATION, if_exists="skip").expand(
        generation_id=submit.output
    )
    watch >> save
