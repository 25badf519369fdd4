"""DAGs for the retry and cost tests (tests/test_durable_dags.py). The tests script the emulator."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator

COMMON = {
    "schedule": None,
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "default_args": {"retries": 1, "retry_delay": timedelta(seconds=1)},
}
WAIT = {"wait_for_completion": True, "poll_interval": 0.2, "max_consecutive_failures": 1}

with DAG(dag_id="vidgen_durable_wait", **COMMON):
    VideosCreateOperator(task_id="create", prompt="durable wait", duration=5, **WAIT)

with DAG(dag_id="vidgen_durable_deferrable", **COMMON):
    VideosCreateOperator(task_id="create", prompt="durable deferred", duration=5, deferrable=True, **WAIT)

with DAG(dag_id="vidgen_durable_mapped", **COMMON):
    VideosCreateOperator.partial(task_id="create", duration=5, **WAIT).expand(
        prompt=["mapped zero", "mapped one", "mapped two"]
    )

with DAG(dag_id="vidgen_durable_unknown_outcome", **COMMON):
    VideosCreateOperator(task_id="create", prompt="unknown outcome", duration=5, **WAIT)

# A create whose answer outlives execution_timeout: Airflow kills the try mid-create and retries it.
with DAG(
    dag_id="vidgen_durable_killed_create",
    **{**COMMON, "default_args": {"retries": 2, "retry_delay": timedelta(seconds=1)}},
):
    VideosCreateOperator(
        task_id="create",
        prompt="killed create",
        duration=5,
        execution_timeout=timedelta(seconds=3),
        **WAIT,
    )
