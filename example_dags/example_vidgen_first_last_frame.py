"""Videos first/last frame: ``image`` and ``last_frame_image`` together; the operator waits itself."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_vidgen_first_last_frame",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "vidgen"],
) as dag:
    VideosCreateOperator(
        task_id="create_and_wait",
        prompt="The sun rises over the harbour; boats drift from the first frame to the last",
        duration=8,
        image="https://example.com/frames/harbour-dawn.png",
        last_frame_image="https://example.com/frames/harbour-morning.png",
        wait_for_completion=True,
        poll_interval=POLL_INTERVAL,
        timeout=60 * 60,
    )
