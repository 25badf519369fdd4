"""Dynamic task mapping: one generation per prompt, then one sensor per generation id."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))

PROMPTS = [
    "A paper boat sails down a rainy street gutter",
    "Time-lapse of clouds rolling over a mountain ridge",
    "A barista pours latte art in slow motion",
]

with DAG(
    dag_id="example_vidgen_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "vidgen"],
) as dag:
    create = VideosCreateOperator.partial(task_id="create", duration=5, model="videos_fast").expand(prompt=PROMPTS)
    VideoGenerationSensor.partial(task_id="wait", poke_interval=POLL_INTERVAL, timeout=60 * 60).expand(
        generation_id=create.output
    )
