"""Sensor options that change what a successful wait pushes or when it must end: where the triggerer
would not do what a worker does with them, the sensor starts (and ends) on a worker, as before."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from airflow_provider_vidgen.testing import Emulator, Timeline
from airflow_provider_vidgen.triggers.vidgen import TRIGGER_TIMEOUT_GRACE
from tests.test_end_in_triggerer import TEMPLATE, created

needs_3_3 = pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="Airflow >= 3.3 only")


def sensor(**kwargs: Any) -> VideoGenerationSensor:
    return VideoGenerationSensor(**{"task_id": "wait", "generation_id": TEMPLATE, "deferrable": True, **kwargs})


@needs_3_3
@pytest.mark.parametrize(
    "options",
    [{"do_xcom_push": False}, {"multiple_outputs": True}],
    ids=["do_xcom_push=False", "multiple_outputs=True"],
)
def test_a_sensor_whose_xcoms_a_worker_pushes_differently_starts_and_ends_on_a_worker(
    emulator_conn: Emulator, context: dict[str, Any], options: dict[str, Any]
) -> None:
    """A worker pushes no ``return_value`` without ``do_xcom_push``, and one XCom per key with
    ``multiple_outputs``; the trigger would push the ``return_value`` only, and always."""
    assert not sensor(**options).start_from_trigger
    generation_id = created(emulator_conn, Timeline(queued_for=60))
    with pytest.raises(TaskDeferred) as info:
        sensor(generation_id=generation_id, **options).execute(context)
    assert info.value.trigger.serialize()[1]["success_xcoms"] is None  # resumes on the worker


@needs_3_3
def test_a_sensor_with_mapped_dependants_ends_on_a_worker(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    """A task that another task expands over pushes its ``return_value`` with the length to map over,
    which only a worker's push records."""
    from airflow.providers.common.compat.sdk import DAG
    from airflow.providers.standard.operators.empty import EmptyOperator

    generation_id = created(emulator_conn, Timeline(queued_for=60))
    with DAG(dag_id="m", schedule=None, start_date=datetime(2026, 1, 1)):
        wait = sensor(generation_id=generation_id)
        EmptyOperator.partial(task_id="each").expand(doc_md=wait.output)
    with pytest.raises(TaskDeferred) as info:
        wait.execute(context)
    assert info.value.trigger.serialize()[1]["success_xcoms"] is None


@needs_3_3
def test_a_sensor_whose_execution_timeout_ends_first_starts_on_a_worker() -> None:
    """Airflow's trigger timeout of a task started in the triggerer is the shorter of
    ``execution_timeout`` and ``timeout`` + the grace; the wait would take that for ``timeout`` + the
    grace and end at once (before its first read), as a sensor timeout (no retries) naming the wrong
    ``timeout``. Started on a worker, it ends when ``execution_timeout`` says, as before."""
    assert not sensor(timeout=600, execution_timeout=timedelta(seconds=30)).start_from_trigger
    just_enough = timedelta(seconds=600 + TRIGGER_TIMEOUT_GRACE)
    assert not sensor(timeout=600, execution_timeout=just_enough - timedelta(seconds=1)).start_from_trigger
    assert sensor(timeout=600, execution_timeout=just_enough).start_from_trigger
    assert sensor(timeout=600).start_from_trigger


@needs_3_3
def test_map_indexes_counts_only_as_an_argument_of_xcom_pull() -> None:
    """A key or task id that merely contains the word still asks for every map index."""
    from airflow_provider_vidgen.sensors.vidgen import _triggerer_answers

    if _triggerer_answers("GetXComSequenceSlice"):
        pytest.skip("this triggerer answers a pull of every map index")
    assert not sensor(generation_id="{{ ti.xcom_pull(task_ids='create', key='map_indexes') }}").start_from_trigger
    assert sensor(generation_id="{{ ti.xcom_pull(task_ids='create', map_indexes = -1) }}").start_from_trigger


def test_a_create_operators_success_xcoms_come_in_a_workers_order() -> None:
    """A worker pushes ``video_url`` and ``actual_duration``, then the ``return_value``: a push that
    fails half-way (the task then resumes on a worker) never leaves a ``return_value`` without them."""
    from airflow_provider_vidgen.events import success_xcoms
    from airflow_provider_vidgen.models import GenerationResult

    result = GenerationResult.model_validate(
        {"id": "proj_1", "status": "completed", "video_url": "https://v/x.mp4?sig=s", "actualDuration": 5.0}
    )
    assert list(success_xcoms("create", result)) == ["video_url", "actual_duration", "return_value"]
