"""A daily DAG for ``airflow vidgen plan``: a templated output, a mapped task, a task mapped over XCom.

- ``daily``: one Videos generation per date, saved under ``VIDGEN_PLAN_OUTPUT/<date>/daily.mp4``
  (skipped when that file exists); its duration renders to 20 seconds (out of range) on 2026-01-03.
- ``variants``: StarVideos mapped over a literal list of two prompts (two generations per run).
- ``from_upstream``: Videos mapped over the prompts an upstream task returns (known at run time).

``vidgen_plan_secrets``: templates that read the connection's password and a sensitive Variable.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator

OUTPUT = os.environ.get("VIDGEN_PLAN_OUTPUT", "file:///nonexistent-vidgen-plan").rstrip("/")

with DAG(
    dag_id="vidgen_plan_backfill",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["vidgen"],
) as dag:
    VideosCreateOperator(
        task_id="daily",
        prompt="Weather summary for {{ ds }}",
        model="videos",
        duration="{{ 20 if ds == '2026-01-03' else 6 }}",
        output_path=OUTPUT + "/{{ ds }}/daily.mp4",
        if_output_exists="skip",
    )
    StarVideosCreateOperator.partial(task_id="variants", duration=4).expand(
        prompt=["A lighthouse at {{ ds }}", "A harbour at {{ ds }}"]
    )

    @task
    def prompts() -> list[str]:
        return ["a", "b", "c"]

    VideosCreateOperator.partial(task_id="from_upstream", model="videos_fast", duration=5).expand(prompt=prompts())

with DAG(
    dag_id="vidgen_plan_secrets",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
) as secrets_dag:
    VideosCreateOperator(
        task_id="reads_the_key", prompt="with {{ conn.vidgen_default.password }}", model="videos", duration=5
    )
    VideosCreateOperator(
        task_id="reads_a_secret", prompt="p", model="videos", duration="{{ var.value.vidgen_api_key }}"
    )
