"""VideoGenerationSensor.poke against the emulator: each state, transient faults, the failure budget."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenGenerationFailedError,
    VidgenTransientError,
)
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline


def create(emulator: Emulator, timeline: Timeline) -> str:
    emulator.queue_timeline(timeline)
    return VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=6))


def sensor(generation_id: str, **kwargs: Any) -> VideoGenerationSensor:
    return VideoGenerationSensor(task_id="wait", generation_id=generation_id, poke_interval=1, **kwargs)


def test_queued_processing_completed(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=10, processing_for=10, actual_duration=6.0))
    s = sensor(generation_id)
    assert s.poke(context) is False  # queued
    emulator_conn.advance(10)
    assert s.poke(context) is False  # processing
    emulator_conn.advance(10)
    done = s.poke(context)
    assert done
    assert done.is_done  # type: ignore[union-attr]
    xcom = done.xcom_value  # type: ignore[union-attr]
    assert set(xcom) == {"id", "status", "model", "created", "video_url", "actual_duration", "error"}
    assert xcom["id"] == generation_id
    assert xcom["status"] == "completed"
    assert xcom["model"] == "videos"
    assert xcom["actual_duration"] == 6.0
    assert xcom["video_url"].startswith(emulator_conn.download_base_url)
    assert xcom["error"] is None


def test_failed_fails_the_task_with_api_error(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0, outcome="failed", error="nsfw"))
    with pytest.raises(VidgenGenerationFailedError, match="nsfw"):
        sensor(generation_id).poke(context)


def test_unknown_status_keeps_waiting(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="unknown_status", value="succeeded", endpoint="result"))
    s = sensor(generation_id)
    assert s.poke(context) is False
    assert s.poke(context).is_done  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, endpoint="result", times=6),
        Fault(kind="status", status=429, retry_after="0", endpoint="result", times=6),
        Fault(kind="drop", endpoint="result", times=6),
    ],
    ids=["503", "429", "dropped"],
)
def test_transient_faults_keep_the_wait_alive(
    emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=1))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(fault)
    s = sensor(generation_id, max_consecutive_failures=3)
    assert [s.poke(context) for _ in range(3)] == [False, False, False]  # 2 requests per poke, all failing
    assert s.poke(context).is_done  # type: ignore[union-attr]
    assert len(emulator_conn.requests_to("result")) == 7


def test_budget_spent_fails(emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=100))
    s = sensor(generation_id, max_consecutive_failures=2)
    assert s.poke(context) is False
    assert s.poke(context) is False
    with pytest.raises(VidgenTransientError, match="3 consecutive failed polls"):
        s.poke(context)


def test_bad_key_fails_at_once(
    emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps({"conn_type": "vidgen", "host": emulator_conn.base_url, "password": "nope"}),
    )
    with pytest.raises(VidgenAuthError):
        sensor("proj_1").poke(context)
    assert len(emulator_conn.requests) == 1


def test_generation_id_is_templated() -> None:
    assert "generation_id" in VideoGenerationSensor.template_fields
    assert "vidgen_conn_id" in VideoGenerationSensor.template_fields


def test_reschedule_mode_carries_the_wait_over_in_the_task_state_store(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, log_text: Any
) -> None:
    from tests.conftest import FakeTI, conn_json
    from tests.test_durable import FakeStore

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    generation_id = create(emulator_conn, Timeline(queued_for=10, processing_for=10))
    store = FakeStore()
    ti = FakeTI()
    ti.try_number = 1  # type: ignore[attr-defined]

    def poke() -> Any:  # every poke of a rescheduled sensor is a new instance (a new process)
        s = VideoGenerationSensor(
            task_id="wait", generation_id=generation_id, mode="reschedule", max_consecutive_failures=1
        )
        return s.poke({"ti": ti, "task_state_store": store})

    assert poke() is False  # queued
    emulator_conn.advance(10)
    assert poke() is False  # processing: logged as a change, with the time since the first poke
    assert "queued -> processing after" in log_text()
    emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=2))
    assert poke() is False  # one failed poke: within the budget of 1
    with pytest.raises(VidgenTransientError, match="2 consecutive failed polls"):
        poke()  # the budget counted across pokes
    assert store.data["vidgen_wait"]["last_status"] == "processing"


# -- the generation id, where it enters -------------------------------------------------------------


@pytest.mark.usefixtures("resume_on_worker")
@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_generation_id_with_surrounding_blanks_works_in_every_mode(
    emulator_conn: Emulator, context: dict[str, Any], deferrable: bool
) -> None:
    """E.g. from a Variable or a Jinja template with spaces: normalised once, used everywhere."""
    import asyncio

    from airflow.providers.common.compat.sdk import TaskDeferred

    generation_id = create(emulator_conn, Timeline(queued_for=0.2, processing_for=0))
    padded = f"  {generation_id}\n"

    def new() -> VideoGenerationSensor:
        return VideoGenerationSensor(
            task_id="wait", generation_id=padded, poke_interval=0.05, timeout=60, deferrable=deferrable
        )

    try:
        xcom = new().execute(context)
    except TaskDeferred as deferred:
        trigger = deferred.trigger
        assert trigger.serialize()[1]["generation_id"] == generation_id

        async def events() -> list[Any]:
            return [event.payload async for event in trigger.run()]

        (event,) = asyncio.run(asyncio.wait_for(events(), 30))
        assert event["generation_id"] == generation_id
        xcom = new().execute_complete(context, event)  # a new instance, rendered again, as on resume
    assert xcom["id"] == generation_id
    assert xcom["status"] == "completed"
    assert {r.generation_id for r in emulator_conn.requests_to("result")} == {generation_id}


# -- options, checked when the DAG is parsed --------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_consecutive_failures", "3"),
        ("max_consecutive_failures", None),
        ("max_consecutive_failures", -1),
        ("max_consecutive_failures", True),
        ("max_consecutive_failures", 2.5),
        ("poke_interval", 0),
        ("poke_interval", "30"),
        ("poke_interval", -5),
        ("generation_id", 123),
        ("generation_id", None),
        ("generation_id", "   "),
        ("vidgen_conn_id", ""),
        ("vidgen_conn_id", None),
        ("deferrable", "yes"),
    ],
)
def test_options_are_checked_when_the_sensor_is_built(option: str, value: Any) -> None:
    from airflow_provider_vidgen.exceptions import VidgenValidationError

    kwargs: dict[str, Any] = {"task_id": "wait", "generation_id": "proj_1", option: value}
    with pytest.raises(VidgenValidationError, match=rf"VideoGenerationSensor.*{option}"):
        VideoGenerationSensor(**kwargs)


def test_templated_generation_id_is_checked_after_rendering(context: dict[str, Any]) -> None:
    from airflow_provider_vidgen.exceptions import VidgenValidationError

    s = VideoGenerationSensor(task_id="wait", generation_id="{{ ti.xcom_pull(task_ids='create') }}")
    s.generation_id = "  "  # what the template rendered to
    with pytest.raises(VidgenValidationError, match="generation_id must not be blank"):
        s.poke(context)


def test_poke_and_reschedule_do_not_trip_airflows_executor_safeguard(
    emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch, log_text: Any
) -> None:
    """Airflow 2.11 logged "VideoGenerationSensor.execute cannot be called outside TaskInstance!" on every
    poke and reschedule run: the sensor's execute called BaseSensorOperator.execute through its safeguard."""
    try:  # Airflow 3
        from airflow.sdk.bases.operator import ExecutorSafeguard

        sentinel: Any = ExecutorSafeguard.sentinel_value
    except ImportError:  # Airflow 2
        from airflow.models.base import _sentinel as sentinel
        from airflow.models.baseoperator import ExecutorSafeguard

    monkeypatch.setattr(ExecutorSafeguard, "test_mode", False)  # the check is off in unit-test mode
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    s = VideoGenerationSensor(task_id="wait", generation_id=generation_id, poke_interval=0.05)
    # As the task instance calls it: with the sentinel that marks a call from the task runner.
    xcom = s.execute(context, **{"VideoGenerationSensor__sentinel": sentinel})
    assert xcom["status"] == "completed"
    assert "cannot be called outside" not in log_text()


def test_task_state_store_and_trigger_kwargs_hold_the_same_wait_state(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One key set: what a rescheduled sensor saves is what a deferred one hands to its trigger."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_vidgen.waiting import STATE_KEYS
    from tests.conftest import FakeTI
    from tests.test_durable import FakeStore

    generation_id = create(emulator_conn, Timeline(queued_for=60))
    store, ti = FakeStore(), FakeTI()
    ti.try_number = 1  # type: ignore[attr-defined]
    rescheduled = VideoGenerationSensor(task_id="wait", generation_id=generation_id, mode="reschedule")
    assert rescheduled.poke({"ti": ti, "task_state_store": store}) is False
    saved = store.data["vidgen_wait"]
    assert set(saved) == {*STATE_KEYS, "try_number"}
    with pytest.raises(TaskDeferred) as deferred:
        VideoGenerationSensor(task_id="wait", generation_id=generation_id, deferrable=True).execute({"ti": ti})
    kwargs = deferred.value.trigger.serialize()[1]
    assert set(kwargs) == {*STATE_KEYS, "vidgen_conn_id", "success_xcoms"}
    same = {"generation_id", "poll_interval", "timeout", "max_consecutive_failures", "last_status", "polls"}
    assert {key: saved[key] for key in same} == {key: kwargs[key] for key in same}


def test_reschedule_mode_reads_the_store_entry_of_an_earlier_version(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, log_text: Any
) -> None:
    """A sensor upgraded between two pokes finds the entry under the old names (``failures``)."""
    import time

    from tests.conftest import FakeTI, conn_json
    from tests.test_durable import FakeStore

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=60))
    store, ti = FakeStore(), FakeTI()
    ti.try_number = 1  # type: ignore[attr-defined]
    earlier = {
        "generation_id": generation_id,
        "try_number": 1,
        "started_at": time.time() - 30,
        "last_status": "queued",
        "failures": 1,
    }
    store.data["vidgen_wait"] = dict(earlier)
    emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=1))
    s = VideoGenerationSensor(
        task_id="wait", generation_id=generation_id, mode="reschedule", max_consecutive_failures=1
    )
    with pytest.raises(VidgenTransientError, match="2 consecutive failed polls"):  # 1 carried over + this one
        s.poke({"ti": ti, "task_state_store": store})
    store.data["vidgen_wait"] = {**earlier, "failures": 0}
    s = VideoGenerationSensor(task_id="wait", generation_id=generation_id, mode="reschedule")
    assert s.poke({"ti": ti, "task_state_store": store}) is False
    assert "queued -> processing after" in log_text()  # the entry's last status carried over
    assert store.data["vidgen_wait"]["started_at"] == earlier["started_at"]  # saved again, under today's names
    assert "failures" not in store.data["vidgen_wait"]


def test_reschedule_mode_takes_its_options_from_the_task_not_the_store(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DAG edited between two pokes of a try: Airflow applies the new options, and so does the wait
    (the store carries what the earlier pokes saw, never the options they ran with)."""
    from tests.conftest import FakeTI, conn_json
    from tests.test_durable import FakeStore

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=60))
    store, ti = FakeStore(), FakeTI()
    ti.try_number = 1  # type: ignore[attr-defined]
    first = VideoGenerationSensor(
        task_id="wait", generation_id=generation_id, mode="reschedule", max_consecutive_failures=5, timeout=600
    )
    assert first.poke({"ti": ti, "task_state_store": store}) is False
    emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=1))
    edited = VideoGenerationSensor(
        task_id="wait", generation_id=generation_id, mode="reschedule", max_consecutive_failures=0, timeout=900
    )
    with pytest.raises(VidgenTransientError, match="1 consecutive failed polls"):  # the new budget, not 5
        edited.poke({"ti": ti, "task_state_store": store})
    assert edited.wait.timeout == 900
    assert edited.wait.polls == 2  # what the first poke saw is carried over
