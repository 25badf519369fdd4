"""StarVideos with 0 images (text-to-video), 1 image (single image) and 2 images (first/last frame)."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG, chain

from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_starvideos",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "vidgen"],
) as dag:
    text_only = StarVideosCreateOperator(
        task_id="text_to_video",
        prompt="A cyberpunk city at night with a slow camera push-in",
        wait_for_completion=True,
        poll_interval=POLL_INTERVAL,
    )
    single_image = StarVideosCreateOperator(
        task_id="single_image",
        prompt="The product spins slowly on a marble table",
        duration=6,
        images=["https://example.com/products/watch.png"],
        wait_for_completion=True,
        poll_interval=POLL_INTERVAL,
    )
    first_last = StarVideosCreateOperator(
        task_id="first_last_frame",
        prompt="A flower bud opens into full bloom",
        duration=4,
        ratio="9:16",
        images=["https://example.com/flower/bud.png", "https://example.com/flower/bloom.png"],
        wait_for_completion=True,
        poll_interval=POLL_INTERVAL,
    )
    chain(text_only, single_image, first_last)
