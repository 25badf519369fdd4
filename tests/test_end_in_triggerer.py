"""Waits that need no worker (Airflow >= 3.3): a deferrable sensor starts in the triggerer, and a
successful wait ends there with the XComs the task would have pushed; every other outcome, and a wait
that saves a video, resumes on a worker as before. On Airflow 2 nothing of this is used."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

from airflow_provider_vidgen.events import TASK_SUCCESS_PAYLOAD, success_xcoms
from airflow_provider_vidgen.exceptions import VidgenGenerationFailedError, VidgenValidationError
from airflow_provider_vidgen.models import GenerationResult
from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from airflow_provider_vidgen.testing import Emulator, Timeline
from airflow_provider_vidgen.triggers.vidgen import TRIGGER_TIMEOUT_GRACE, VideoGenerationTrigger, ends_in_triggerer
from airflow_provider_vidgen.waiting import STATE_KEYS

needs_3_3 = pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="Airflow >= 3.3 only")
CLASSPATH = "airflow_provider_vidgen.triggers.vidgen.VideoGenerationTrigger"
#: One XCom (``map_indexes`` named): a request the triggerer answers.
TEMPLATE = "{{ ti.xcom_pull(task_ids='create', map_indexes=-1) }}"


def events_of(trigger: VideoGenerationTrigger) -> list[Any]:
    async def main() -> list[Any]:
        return [event async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(main(), 30))


def created(emulator: Emulator, timeline: Timeline) -> str:
    from airflow_provider_vidgen.hooks.vidgen import VidgenHook
    from airflow_provider_vidgen.models import VideosRequest

    emulator.set_timeline(timeline)
    hook = VidgenHook()
    try:
        return hook.create(VideosRequest.build(model="videos", prompt="p", duration=5))
    finally:
        hook.close()


def test_ends_in_triggerer_only_on_airflow_3_3() -> None:
    assert ends_in_triggerer() is AIRFLOW_V_3_3_PLUS


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """XComs a trigger pushes through the triggerer (``XCom.aset``), recorded here: no triggerer runs."""
    recorded: dict[str, Any] = {}
    if not AIRFLOW_V_3_3_PLUS:
        return recorded
    from airflow.sdk.execution_time.xcom import XCom

    async def aset(key: str, value: Any, **where: Any) -> None:
        assert where == {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1}
        recorded[key] = json.loads(json.dumps(value))  # what a worker's push would store

    monkeypatch.setattr(XCom, "aset", aset)
    return recorded


def of_task(trigger: VideoGenerationTrigger) -> VideoGenerationTrigger:
    """The trigger as the triggerer runs it: with its task instance."""
    from types import SimpleNamespace

    trigger.task_instance = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, task=None)
    return trigger


def test_success_xcoms_are_what_the_tasks_push() -> None:
    result = GenerationResult.model_validate(
        {"id": "proj_1", "status": "completed", "video_url": "https://v/x.mp4?sig=s", "actualDuration": 5.0}
    )
    assert success_xcoms("sensor", result) == {"return_value": result.to_xcom()}
    assert success_xcoms("create", result) == {
        "return_value": "proj_1",
        "video_url": "https://v/x.mp4?sig=s",
        "actual_duration": 5.0,
    }
    with pytest.raises(ValueError, match="must be 'sensor' or 'create'"):
        success_xcoms("download", result)


# -- the sensor starts in the triggerer -------------------------------------------------------------


def sensor(**kwargs: Any) -> VideoGenerationSensor:
    return VideoGenerationSensor(**{"task_id": "wait", "generation_id": TEMPLATE, "deferrable": True, **kwargs})


def test_deferrable_sensor_starts_in_the_triggerer_with_primitive_kwargs(emulator_conn: Emulator) -> None:
    wait = sensor(poke_interval=40, timeout=600, max_consecutive_failures=3)
    if not AIRFLOW_V_3_3_PLUS:
        assert not wait.start_from_trigger  # today's behaviour: it starts on a worker
        return
    assert wait.start_from_trigger is True
    args = wait.start_trigger_args
    assert args is not None
    assert args.trigger_cls == CLASSPATH
    assert args.next_method == "execute_complete"
    assert args.timeout == timedelta(seconds=600 + TRIGGER_TIMEOUT_GRACE)
    kwargs = args.trigger_kwargs
    # The connection id, what a success pushes, and the wait's state (the same keys as a deferral's),
    # without a start: the wait begins when the triggerer runs it.
    assert set(kwargs) == {"vidgen_conn_id", "success_xcoms", *STATE_KEYS}
    assert {key: value for key, value in kwargs.items() if value is not None} == {
        "generation_id": TEMPLATE,  # rendered in the triggerer
        "vidgen_conn_id": "vidgen_default",
        "success_xcoms": "sensor",
        "poll_interval": 40.0,
        "timeout": 600.0,
        "max_consecutive_failures": 3,
        "exponential_backoff": False,
        "backoff_when_late": False,
        "consecutive_failures": 0,
        "polls": 0,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert emulator_conn.api_key not in json.dumps(kwargs)
    assert VideoGenerationTrigger(**kwargs).serialize()[0] == CLASSPATH
    assert set(kwargs) <= set(wait.template_fields) | set(VideoGenerationTrigger(**kwargs).serialize()[1])


@needs_3_3
def test_the_scheduler_sees_the_start_in_the_triggerer() -> None:
    """As the DAG processor serializes it and the scheduler reads it back (``TaskInstance.defer_task``)."""
    from airflow.providers.common.compat.sdk import DAG
    from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

    with DAG(dag_id="s", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        sensor(timeout=600)
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("wait")
    assert task.start_from_trigger is True
    args = task.start_trigger_args
    assert args.trigger_cls == CLASSPATH
    assert args.next_method == "execute_complete"
    assert args.timeout == timedelta(seconds=600 + TRIGGER_TIMEOUT_GRACE)
    kwargs = BaseSerialization.deserialize(args.trigger_kwargs)
    assert kwargs["generation_id"] == TEMPLATE
    assert kwargs["started_at"] is None


def test_silent_fail_sensor_starts_with_no_failure_budget() -> None:
    wait = sensor(silent_fail=True)
    if AIRFLOW_V_3_3_PLUS:
        assert wait.start_trigger_args is not None
        assert wait.start_trigger_args.trigger_kwargs["max_consecutive_failures"] is None


def test_sensors_that_start_on_a_worker() -> None:
    from airflow.providers.common.compat.sdk import DAG

    assert not sensor(deferrable=False).start_from_trigger
    assert VideoGenerationSensor.start_from_trigger is False  # mapped sensors read the class value
    with DAG(dag_id="d", schedule=None, start_date=datetime(2026, 1, 1)):
        mapped = VideoGenerationSensor.partial(task_id="mapped", deferrable=True).expand(generation_id=["a", "b"])
    assert not mapped.start_from_trigger


def test_a_sensor_pulling_every_map_index_starts_on_a_worker_unless_the_triggerer_answers_that() -> None:
    """``xcom_pull`` without ``map_indexes`` asks for every map index: Airflow 3.3.2's triggerer never
    answers that request (the render would wait until the trigger times out)."""
    from airflow_provider_vidgen.sensors.vidgen import _triggerer_answers

    every_index = sensor(generation_id="{{ ti.xcom_pull(task_ids='create', key='generation_id') }}")
    assert every_index.start_from_trigger is (AIRFLOW_V_3_3_PLUS and _triggerer_answers("GetXComSequenceSlice"))
    assert sensor(vidgen_conn_id="{{ ti.xcom_pull(task_ids='conn') }}").start_from_trigger is (
        every_index.start_from_trigger
    )
    assert sensor(generation_id="{{ var.value.generation }}").start_from_trigger is AIRFLOW_V_3_3_PLUS


def test_a_sensor_whose_dag_has_its_own_template_macros_starts_on_a_worker() -> None:
    """The triggerer renders with Airflow's plain Jinja environment: the DAG's macros exist on a worker only."""
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id="m", schedule=None, start_date=datetime(2026, 1, 1), user_defined_macros={"gid": lambda: "x"}):
        with_macros = sensor(generation_id="{{ gid() }}")
    with DAG(dag_id="p", schedule=None, start_date=datetime(2026, 1, 1)):
        plain = sensor()
    assert not with_macros.start_from_trigger
    assert plain.start_from_trigger is AIRFLOW_V_3_3_PLUS


@needs_3_3
def test_started_in_the_triggerer_a_completed_wait_ends_the_task_with_the_sensor_xcom(
    emulator_conn: Emulator, context: dict[str, Any], pushed: dict[str, Any]
) -> None:
    from airflow.triggers.base import TaskSuccessEvent

    generation_id = created(emulator_conn, Timeline(queued_for=0.2, processing_for=0.2))
    wait = sensor(poke_interval=0.05, timeout=60)
    assert wait.start_trigger_args is not None
    trigger = of_task(VideoGenerationTrigger(**wait.start_trigger_args.trigger_kwargs))
    trigger.generation_id = f" {generation_id}\n"  # what Airflow rendered, with blanks
    trigger.timeout_after = datetime.now(timezone.utc) + timedelta(seconds=60 + TRIGGER_TIMEOUT_GRACE)
    (event,) = events_of(trigger)
    assert isinstance(event, TaskSuccessEvent)
    poked = VideoGenerationSensor(task_id="poke", generation_id=generation_id, poke_interval=0.05).execute(context)
    assert pushed == {"return_value": poked}
    assert event.xcoms is None  # Airflow logs the event (and would write its XComs as JSON text)


@needs_3_3
def test_started_in_the_triggerer_the_deadline_is_airflows_trigger_timeout(emulator_conn: Emulator) -> None:
    generation_id = created(emulator_conn, Timeline(queued_for=3600))
    wait = sensor(generation_id=generation_id, poke_interval=0.05, timeout=600)
    assert wait.start_trigger_args is not None
    trigger = VideoGenerationTrigger(**wait.start_trigger_args.trigger_kwargs)
    # A restarted triggerer: the task's trigger timeout (from the TaskInstance row) is nearly over.
    timeout_after = datetime.now(timezone.utc) + timedelta(seconds=TRIGGER_TIMEOUT_GRACE + 0.3)
    trigger.timeout_after = timeout_after
    (event,) = events_of(trigger)
    assert event.payload["status"] == "timeout"
    assert "600" in event.payload["message"]  # the wait's own timeout, not what was left of it
    # The wait's state got its start from Airflow's timeout: deadline = that timeout less the grace.
    assert trigger.end_time == pytest.approx(timeout_after.timestamp() - TRIGGER_TIMEOUT_GRACE)
    assert trigger.serialize()[1]["started_at"] == pytest.approx(trigger.end_time - 600)


@needs_3_3
def test_started_in_the_triggerer_without_airflows_timeout_the_wait_lasts_its_timeout_from_now(
    emulator_conn: Emulator,
) -> None:
    import time

    generation_id = created(emulator_conn, Timeline(queued_for=0, processing_for=0))
    wait = sensor(generation_id=generation_id, poke_interval=0.05, timeout=600)
    assert wait.start_trigger_args is not None
    trigger = VideoGenerationTrigger(**wait.start_trigger_args.trigger_kwargs)
    before = time.time()
    (event,) = events_of(trigger)
    assert event.payload["status"] == "completed"  # no task instance to push through: it resumes
    assert before + 600 <= trigger.end_time <= time.time() + 600


def test_the_deferrable_example_sensor_starts_in_the_triggerer() -> None:
    """``example_vidgen_deferrable`` names ``map_indexes`` in its template, so on Airflow >= 3.3 its
    sensor starts in the triggerer (without it, the sensor would start on a worker)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "example_dags" / "example_vidgen_deferrable.py"
    spec = importlib.util.spec_from_file_location("example_vidgen_deferrable_loaded", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.dag.get_task("wait").start_from_trigger is AIRFLOW_V_3_3_PLUS


@needs_3_3
def test_started_in_the_triggerer_a_blank_rendered_id_resumes_the_task_with_its_error(
    emulator_conn: Emulator, context: dict[str, Any]
) -> None:
    wait = sensor(poke_interval=0.05)
    assert wait.start_trigger_args is not None
    trigger = VideoGenerationTrigger(**wait.start_trigger_args.trigger_kwargs)
    trigger.generation_id = "  "
    (event,) = events_of(trigger)
    assert event.payload["status"] == "error"
    assert event.payload["error_class"] == "VidgenValidationError"
    wait.generation_id = "  "  # rendered the same on the worker
    with pytest.raises(VidgenValidationError):
        wait.execute_complete(context, event.payload)
    assert emulator_conn.requests_to("result") == []


@needs_3_3
def test_started_in_the_triggerer_a_failed_generation_resumes_the_task(
    emulator_conn: Emulator, context: dict[str, Any]
) -> None:
    generation_id = created(emulator_conn, Timeline(queued_for=0.1, processing_for=0.1, outcome="failed"))
    wait = sensor(generation_id=generation_id, poke_interval=0.05)
    assert wait.start_trigger_args is not None
    (event,) = events_of(VideoGenerationTrigger(**wait.start_trigger_args.trigger_kwargs))
    assert event.payload["status"] == "failed"
    with pytest.raises(VidgenGenerationFailedError):
        wait.execute_complete(context, event.payload)


def test_sensor_resumed_after_ending_in_the_triggerer_reads_the_result_again(
    emulator_conn: Emulator, context: dict[str, Any]
) -> None:
    """``airflow dags test`` resumes a task that a TaskSuccessEvent ended, with its payload only."""
    generation_id = created(emulator_conn, Timeline(queued_for=0, processing_for=0))
    wait = sensor(generation_id=generation_id)
    xcom = wait.execute_complete(context, TASK_SUCCESS_PAYLOAD)
    assert xcom["id"] == generation_id
    assert xcom["status"] == "completed"
    assert len(emulator_conn.requests_to("result")) == 1


# -- create operators -------------------------------------------------------------------------------


def create_op(**kwargs: Any) -> VideosCreateOperator:
    return VideosCreateOperator(
        task_id="task", prompt="p", duration=5, wait_for_completion=True, deferrable=True, poll_interval=0.05, **kwargs
    )


def test_create_without_output_path_ends_in_the_triggerer_with_the_same_xcoms(
    emulator_conn: Emulator, context: dict[str, Any], pushed: dict[str, Any]
) -> None:
    from airflow.triggers.base import TaskSuccessEvent

    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1, actual_duration=7))
    with pytest.raises(TaskDeferred) as info:
        create_op().execute(context)
    trigger = of_task(info.value.trigger)
    _, kwargs = trigger.serialize()
    assert kwargs["success_xcoms"] == ("create" if AIRFLOW_V_3_3_PLUS else None)
    (event,) = events_of(trigger)
    if not AIRFLOW_V_3_3_PLUS:
        assert event.payload["status"] == "completed"
        return
    assert isinstance(event, TaskSuccessEvent)
    generation_id = context["ti"].xcom["generation_id"]
    # What the worker would have pushed on resuming (see test_deferrable: the same keys and values).
    resumed: dict[str, Any] = {"ti": type(context["ti"])()}
    resumed["ti"].xcom["generation_id"] = generation_id
    returned = create_op().execute_complete(resumed, TASK_SUCCESS_PAYLOAD)
    assert pushed == {
        "return_value": returned,
        "video_url": resumed["ti"].xcom["video_url"],
        "actual_duration": resumed["ti"].xcom["actual_duration"],
    }
    assert pushed["actual_duration"] == 7


@needs_3_3
def test_a_completed_wait_whose_xcoms_cannot_be_pushed_resumes_the_task(
    emulator_conn: Emulator, context: dict[str, Any]
) -> None:
    """Without a triggerer to push through (here: none at all), the task resumes and pushes them itself."""
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1))
    with pytest.raises(TaskDeferred) as info:
        create_op().execute(context)
    (event,) = events_of(of_task(info.value.trigger))
    assert event.payload["status"] == "completed"
    assert create_op().execute_complete(context, event.payload) == context["ti"].xcom["generation_id"]


def test_create_with_output_path_resumes_on_the_worker_to_save(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Any
) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=60))
    with pytest.raises(TaskDeferred) as info:
        create_op(output_path=str(tmp_path / "v.mp4")).execute(context)
    assert info.value.trigger.serialize()[1]["success_xcoms"] is None


@needs_3_3
def test_xcoms_that_cannot_be_pushed_never_put_the_signed_url_in_the_log(
    emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch, log_text: Any
) -> None:
    """An XCom backend (or a validation error) quoting the value it refused: only its class is logged."""
    from airflow.sdk.execution_time.xcom import XCom

    async def aset(key: str, value: Any, **where: Any) -> None:
        raise RuntimeError(f"cannot store {key}={value!r}")

    monkeypatch.setattr(XCom, "aset", aset)
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1))
    with pytest.raises(TaskDeferred) as info:
        create_op().execute(context)
    (event,) = events_of(of_task(info.value.trigger))
    assert event.payload["status"] == "completed"
    logged = log_text()
    assert "RuntimeError while ending it here" in logged
    assert "expires=" not in logged
    assert "cannot store" not in logged


@needs_3_3
def test_a_task_a_mapped_task_expands_over_resumes_on_the_worker(
    emulator_conn: Emulator, context: dict[str, Any], pushed: dict[str, Any]
) -> None:
    """A worker's push records the length a mapped task expands over; the triggerer's does not: nothing
    is pushed there, the task resumes and pushes it all."""
    from types import SimpleNamespace

    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1))
    with pytest.raises(TaskDeferred) as info:
        create_op().execute(context)
    trigger = info.value.trigger
    task = SimpleNamespace(iter_mapped_dependants=lambda: iter([object()]), template_ext=(), template_fields=())
    trigger.task_instance = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, task=task)
    (event,) = events_of(trigger)
    assert event.payload["status"] == "completed"
    assert pushed == {}


@pytest.mark.parametrize("kwargs", [{"do_xcom_push": False}, {"multiple_outputs": True}], ids=str)
def test_create_whose_worker_pushes_otherwise_resumes_on_the_worker(
    emulator_conn: Emulator, context: dict[str, Any], kwargs: dict[str, Any]
) -> None:
    """Without ``do_xcom_push`` a worker pushes no ``return_value``; with ``multiple_outputs`` it fails on
    the id (not a dict): the triggerer cannot do the same, so the task resumes on a worker."""
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1))
    with pytest.raises(TaskDeferred) as info:
        create_op(**kwargs).execute(context)
    assert info.value.trigger.serialize()[1]["success_xcoms"] is None
