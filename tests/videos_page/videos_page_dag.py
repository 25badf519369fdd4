"""A second DAG that saves a video (the Videos page's DAG filter has something to tell apart)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator

OUTPUT = os.environ.get("VIDGEN_EXAMPLE_OUTPUT", Path(tempfile.gettempdir(), "vidgen-videos").as_uri()).rstrip("/")

with DAG(
    dag_id="videos_page_clips",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
) as dag:
    VideosCreateOperator(
        task_id="clip",
        prompt="A paper boat on a rain-soaked street, close-up",
        duration=4,
        output_path=OUTPUT + "/clips/{{ ds }}.mp4",
        poll_interval=float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30")),
    )
