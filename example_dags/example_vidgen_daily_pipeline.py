"""A daily content pipeline that lands every video in storage, and is free to re-run.

For each run date (the logical date, or the date a manual run without one was triggered for):

- ``highlight``: check that the day's file is missing -> create -> sensor (deferrable)
  -> ``VideoDownloadOperator`` to a dated path; the download emits an asset event that a downstream
  DAG can be scheduled on (``schedule=[VIDEOS]``; the event's ``extra`` holds the manifest).
- ``teaser``: the one-task form: ``StarVideosCreateOperator(output_path=...)`` creates, waits in the
  triggerer, then saves the video on the worker.

A re-run (or backfill) of a day whose files already exist creates nothing and bills nothing: the
check skips the first chain, and ``if_output_exists="skip"`` skips the teaser.

Set ``VIDGEN_EXAMPLE_OUTPUT`` to a URI such as ``s3://my-bucket/videos`` (with the matching Airflow
provider installed); it defaults to a local folder.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG, Asset, ObjectStoragePath, task

from airflow_provider_vidgen.operators.vidgen import (
    StarVideosCreateOperator,
    VideoDownloadOperator,
    VideosCreateOperator,
)
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor

# The API advises polling every 30-60 s; the demo and tests lower this for the fast emulator.
POLL_INTERVAL = float(os.environ.get("VIDGEN_EXAMPLE_POLL_INTERVAL", "30"))
OUTPUT = os.environ.get("VIDGEN_EXAMPLE_OUTPUT", "file:///tmp/vidgen-videos").rstrip("/")
VIDEOS = Asset("vidgen_daily_videos")
# The run's date, ``YYYY-MM-DD``: the logical date of a scheduled run or backfill, else (a manual run
# on Airflow 3, which has no logical date) the date it was triggered for. ``{{ ds }}`` alone is
# undefined in such a run and fails every task that renders it.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="example_vidgen_daily_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    tags=["example", "vidgen"],
) as dag:
    highlight_path = OUTPUT + "/" + RUN_DATE + "/highlight.mp4"

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def highlight_missing(path: str) -> bool:
        """Skip the whole chain when the day's video is already saved (a re-run bills nothing)."""
        return not ObjectStoragePath(path).exists()

    create = VideosCreateOperator(
        task_id="create_highlight",
        prompt="Highlights of " + RUN_DATE + ": the city from sunrise to night, fast cuts, upbeat",
        duration=8,
        model="videos_fast",
        ratio="9:16",
    )
    wait = VideoGenerationSensor(
        task_id="wait_highlight",
        generation_id="{{ ti.xcom_pull(task_ids='create_highlight', key='generation_id') }}",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=2 * 60 * 60,
    )
    save = VideoDownloadOperator(
        task_id="save_highlight",
        generation_id="{{ ti.xcom_pull(task_ids='create_highlight', key='generation_id') }}",
        destination=highlight_path,
        outlets=[VIDEOS],
    )
    highlight_missing(highlight_path) >> create >> wait >> save

    teaser = StarVideosCreateOperator(
        task_id="teaser",
        prompt="Teaser for " + RUN_DATE + ": a slow push-in on the skyline at dusk",
        duration=5,
        output_path=OUTPUT + "/" + RUN_DATE + "/teaser.mp4",
        if_output_exists="skip",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        outlets=[VIDEOS],
        trigger_rule="none_failed",  # runs after the highlight chain, whether it ran or was skipped
    )
    save >> teaser  # `airflow dags test` runs ready tasks one at a time; keep the order stable
