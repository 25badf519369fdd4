"""Videos text-to-video: create a generation, then wait for it with the sensor.

The create task returns the generation id at once (XCom ``return_value`` and ``generation_id``);
the sensor waits until the video is ready and returns its result dict (``video_url``, ...).
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_vidgen_text_to_video",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "vidgen"],
) as dag:
    create = VideosCreateOperator(
        task_id="create",
        prompt="A cute kitten playing in the grass, bright daylight, cinematic camera",
        duration=5,
        model="videos",
        ratio="16:9",
    )
    wait = VideoGenerationSensor(
        task_id="wait",
        generation_id="{{ ti.xcom_pull(task_ids='create') }}",
        poke_interval=POLL_INTERVAL,
        timeout=60 * 60,
    )
    create >> wait
