"""Videos reference material: up to 4 reference images and 3 reference videos (fast model)."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_vidgen_references",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "vidgen"],
) as dag:
    VideosCreateOperator(
        task_id="create_and_wait",
        prompt="Our mascot walks through the product showroom, smooth tracking shot",
        duration=10,
        model="videos_fast",
        ratio="9:16",
        reference_images=[
            "https://example.com/brand/mascot-front.png",
            "https://example.com/brand/mascot-side.png",
        ],
        reference_videos=["https://example.com/brand/showroom-walkthrough.mp4"],
        wait_for_completion=True,
        poll_interval=POLL_INTERVAL,
        timeout=2 * 60 * 60,  # reference-heavy generations take longer
    )
