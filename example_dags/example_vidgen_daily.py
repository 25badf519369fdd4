"""A daily content pipeline, backfill-friendly: the prompt is templated from the run's date.

Each run creates one generation for its own date; a backfill over past dates makes one video per
date. The sensor uses ``reschedule`` mode, so no worker slot is held while the video renders.

The run's date is its logical date (scheduled runs and backfills) or, for a manual run that has
none (Airflow 3 triggers manual runs without a logical date by default), the date it was triggered
for (``run_after``). ``{{ ds }}`` alone is undefined in such a run and would fail the task.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))
# ``YYYY-MM-DD`` in scheduled, backfill and manual runs alike (Airflow 2.11 and 3.x).
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="example_vidgen_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    tags=["example", "vidgen"],
) as dag:
    create = StarVideosCreateOperator(
        task_id="create",
        prompt="Daily highlights reel for " + RUN_DATE + ": city skyline from dawn to dusk, upbeat pacing",
        duration=8,
        ratio="9:16",
    )
    wait = VideoGenerationSensor(
        task_id="wait",
        generation_id="{{ ti.xcom_pull(task_ids='create', key='generation_id') }}",
        poke_interval=POLL_INTERVAL,
        mode="reschedule",
        timeout=2 * 60 * 60,
    )
    create >> wait
