"""Deferrable waiting: no worker slot is held while the video renders; the triggerer polls.

``create_and_wait`` creates a StarVideos generation and defers to ``VideoGenerationTrigger``;
``create`` + ``wait`` do the same with the sensor. Both check the status once before deferring.
On Airflow >= 3.3 a successful wait ends in the triggerer, and ``wait`` also starts there (no worker
process at all): its template names ``map_indexes``, a request the triggerer answers.
Set ``[operators] default_deferrable = True`` to make every vidgen operator and sensor deferrable.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG, chain

from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_vidgen_deferrable",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "vidgen"],
) as dag:
    create_and_wait = StarVideosCreateOperator(
        task_id="create_and_wait",
        prompt="Northern lights over a frozen lake, slow pan",
        duration=6,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=60 * 60,
    )
    create = VideosCreateOperator(
        task_id="create",
        prompt="A hummingbird hovering at a red flower, macro, slow motion",
        duration=4,
    )
    wait = VideoGenerationSensor(
        task_id="wait",
        generation_id="{{ ti.xcom_pull(task_ids='create', key='generation_id', map_indexes=-1) }}",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=60 * 60,
    )
    chain(create_and_wait, create, wait)
