"""DAGs of the lineage and metrics tests (tests/test_observability_e2e.py); output under VIDGEN_TEST_OUTPUT."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import (
    StarVideosCreateOperator,
    VideoDownloadOperator,
    VideosCreateOperator,
)

OUTPUT = os.environ.get("VIDGEN_TEST_OUTPUT", "/nonexistent")
POLL = {"poll_interval": 0.2}
#: Input URLs: the query string (a signature) must never reach the lineage.
REFERENCE_IMAGES = ["https://images.example.com/refs/cat.png?sig=SIGNED-abc", "https://images.example.com/refs/dog.png"]
REFERENCE_VIDEO = "https://clips.example.com:8443/refs/walk.mp4"
FIRST, LAST = "https://frames.example.com/first.png", "https://frames.example.com/last.png"

with DAG(
    dag_id="vidgen_observability",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    create = VideosCreateOperator(
        task_id="create",
        prompt="a cat and a dog walk on a beach at dawn",
        duration=6,
        model="videos_fast",
        reference_images=REFERENCE_IMAGES,
        reference_videos=[REFERENCE_VIDEO],
        output_path=f"{OUTPUT}/created.mp4",
        **POLL,
    )
    download = VideoDownloadOperator(
        task_id="download",
        generation_id=create.output,
        destination=f"file://{OUTPUT}/downloaded.mp4",
    )
    StarVideosCreateOperator(
        task_id="star",
        prompt="first to last frame",
        duration=4,
        images=[FIRST, LAST],
        wait_for_completion=True,
        **POLL,
    )
