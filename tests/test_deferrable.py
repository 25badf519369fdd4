"""Deferrable sensor and operators: check before deferring, what they defer with, strict resumption.

Poke, reschedule and deferrable modes must give the same XComs and the same errors for the same API
behaviour: the events used here come from real trigger runs against the emulator.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException, TaskDeferred

from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenError,
    VidgenGenerationFailedError,
    VidgenSensorTimeoutError,
    VidgenWaitTimeoutError,
)
from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger


def operator(**kwargs: Any) -> VideosCreateOperator:
    return VideosCreateOperator(
        task_id="task", prompt="p", duration=5, wait_for_completion=True, deferrable=True, poll_interval=0.05, **kwargs
    )


def run_trigger(trigger: VideoGenerationTrigger) -> dict[str, Any]:
    async def main() -> list[Any]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(main(), 30))
    return event


def deferred_trigger(info: pytest.ExceptionInfo[TaskDeferred]) -> VideoGenerationTrigger:
    trigger = info.value.trigger
    assert isinstance(trigger, VideoGenerationTrigger)
    assert info.value.method_name == "execute_complete"
    return trigger


# -- operators -------------------------------------------------------------------------------------


def test_just_created_generation_defers_without_a_read(context: dict[str, Any], emulator_conn: Emulator) -> None:
    # Created in this try: it cannot be finished yet, so the worker does not read it before deferring
    # (even one the emulator finishes at once); the trigger reads it within its first-check window.
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)
    assert emulator_conn.requests_to("result") == []
    assert run_trigger(deferred_trigger(info))["status"] == "completed"
    assert len(emulator_conn.requests_to("result")) == 1


def test_reconnected_generation_is_checked_before_deferring(context: dict[str, Any], emulator_conn: Emulator) -> None:
    # An id an earlier try created (durable) may be finished already: read once, done without deferring.
    from tests.test_durable import FakeStore, new_try

    store = FakeStore()
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    with pytest.raises(TaskDeferred):
        operator().execute(new_try(store))  # the first try: created, deferred, then lost
    assert emulator_conn.requests_to("result") == []
    retry = new_try(store)
    generation_id = operator().execute(retry)
    assert retry["ti"].xcom["video_url"].startswith(emulator_conn.download_base_url)
    assert len(emulator_conn.creates()) == 1
    assert [r for r in emulator_conn.requests_to("result") if r.generation_id == generation_id]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"adaptive_polling": True}, "videos/videos/5/text"),
        (
            {
                "adaptive_polling": True,
                "image": "https://example.com/a.png",
                "last_frame_image": "https://example.com/b.png",
            },
            "videos/videos/5/first-last-frame",
        ),
        ({"adaptive_polling": True, "reference_images": ["https://example.com/a.png"]}, "videos/videos/5/references"),
        ({}, None),  # off by default: the fixed schedule
    ],
)
def test_operator_defers_with_the_schedule_key(
    context: dict[str, Any], emulator_conn: Emulator, params: dict[str, Any], key: str | None
) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=60))
    with pytest.raises(TaskDeferred) as info:
        operator(**params).execute(context)
    _, kwargs = deferred_trigger(info).serialize()
    assert kwargs["schedule_key"] == key
    assert kwargs["backoff_when_late"] is False


def test_starvideos_schedule_key_and_backoff_option(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=60))
    task = StarVideosCreateOperator(
        task_id="task",
        prompt="p",
        images=["https://example.com/a.png"],
        wait_for_completion=True,
        deferrable=True,
        poll_interval=0.05,
        adaptive_polling=True,
        poll_backoff_when_late=True,
    )
    with pytest.raises(TaskDeferred) as info:
        task.execute(context)
    _, kwargs = deferred_trigger(info).serialize()
    assert kwargs["schedule_key"] == "starvideos/starvideos_v3/5/image"
    assert kwargs["backoff_when_late"] is True


def test_operator_pushes_id_then_defers_with_absolute_deadline(
    context: dict[str, Any], emulator_conn: Emulator
) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=60))
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        operator(timeout=600, vidgen_conn_id="vidgen_default").execute(context)
    trigger = deferred_trigger(info)
    generation_id = context["ti"].xcom["generation_id"]  # pushed before deferring
    _, kwargs = trigger.serialize()
    assert kwargs["generation_id"] == generation_id
    assert kwargs["vidgen_conn_id"] == "vidgen_default"
    assert kwargs["poll_interval"] == 0.05
    assert before + 600 <= trigger.end_time <= time.time() + 600
    assert len(emulator_conn.creates()) == 1


@pytest.mark.usefixtures("resume_on_worker")
def test_operator_resumes_with_the_same_xcoms(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1, actual_duration=7))
    op = StarVideosCreateOperator(
        task_id="task", prompt="p", wait_for_completion=True, deferrable=True, poll_interval=0.05
    )
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    event = run_trigger(deferred_trigger(info))
    generation_id = op.execute_complete(context, event)
    assert generation_id == context["ti"].xcom["generation_id"]
    assert context["ti"].xcom["actual_duration"] == 7
    assert "video_url" not in event["result"]  # the event carries no URL: execute_complete read a fresh one
    assert context["ti"].xcom["video_url"].startswith(emulator_conn.download_base_url)
    assert len(emulator_conn.requests_to("result")) >= 2


def test_failed_generation_same_error_deferred_or_not(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1, outcome="failed", error="policy"))
    with pytest.raises(VidgenGenerationFailedError) as sync_error:
        VideosCreateOperator(
            task_id="task", prompt="p", duration=5, wait_for_completion=True, poll_interval=0.05
        ).execute(context)
    sync_id = context["ti"].xcom["generation_id"]
    op = operator()
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    deferred_id = context["ti"].xcom["generation_id"]
    with pytest.raises(VidgenGenerationFailedError) as deferred_error:
        op.execute_complete(context, run_trigger(deferred_trigger(info)))
    assert str(sync_error.value).replace(sync_id, "ID") == str(deferred_error.value).replace(deferred_id, "ID")


def test_timeout_same_error_deferred_or_not(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=3600))
    with pytest.raises(VidgenWaitTimeoutError) as sync_error:
        VideosCreateOperator(
            task_id="task", prompt="p", duration=5, wait_for_completion=True, poll_interval=0.05, timeout=0.3
        ).execute(context)
    sync_id = context["ti"].xcom["generation_id"]
    op = operator(timeout=0.3)
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    deferred_id = context["ti"].xcom["generation_id"]
    with pytest.raises(VidgenWaitTimeoutError) as deferred_error:
        op.execute_complete(context, run_trigger(deferred_trigger(info)))
    assert str(sync_error.value).replace(sync_id, "ID") == str(deferred_error.value).replace(deferred_id, "ID")
    assert "may still finish" in str(deferred_error.value)
    assert "VideoGenerationSensor" in str(deferred_error.value)


def test_auth_error_replayed_as_the_same_class(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=60))
    op = operator()
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    emulator_conn.add_fault(Fault(kind="status", status=401, endpoint="result"))
    with pytest.raises(VidgenAuthError, match="HTTP 401"):
        op.execute_complete(context, run_trigger(deferred_trigger(info)))


@pytest.mark.parametrize(
    "event",
    [
        None,
        "completed",
        {"status": "succeeded", "generation_id": "ID"},
        {"status": "completed", "generation_id": "someone-else"},
        {"status": "completed", "generation_id": "ID", "result": {"id": "ID", "status": "processing"}},
        {"status": "completed", "generation_id": "ID", "result": "completed"},
        {"status": "completed", "generation_id": "ID", "result": {"status": "completed"}},
        {"status": "failed", "generation_id": "ID", "result": ["policy"]},
    ],
    ids=[
        "none",
        "string",
        "unknown-status",
        "other-id",
        "not-completed",
        "result-not-a-dict",
        "result-no-id",
        "failed-result-not-a-dict",
    ],
)
def test_execute_complete_rejects_unexpected_events(context: dict[str, Any], event: Any) -> None:
    context["ti"].xcom["generation_id"] = "ID"
    if isinstance(event, dict):
        event = {"result": None, "message": None, "last_status": None, "error_class": None, **event}
    with pytest.raises(VidgenError) as info:
        operator().execute_complete(context, event)
    assert type(info.value) is VidgenError
    assert "video_url" not in context["ti"].xcom


@pytest.mark.parametrize("deferrable_sensor", [False, True], ids=["operator", "sensor"])
def test_completed_event_is_checked_against_a_fresh_read(
    context: dict[str, Any], emulator_conn: Emulator, deferrable_sensor: bool
) -> None:
    """The event carries no URL; the fresh read on resume must say completed, with a URL."""
    emulator_conn.set_timeline(Timeline(queued_for=3600))
    generation_id = create(emulator_conn, Timeline(queued_for=3600))
    context["ti"].xcom["generation_id"] = generation_id
    event = {
        "status": "completed",
        "generation_id": generation_id,
        "result": {"id": generation_id, "status": "completed"},
        "message": None,
        "last_status": None,
        "error_class": None,
    }
    task = sensor(generation_id) if deferrable_sensor else operator()
    with pytest.raises(VidgenError, match="reading its result again gave status 'queued'") as info:
        task.execute_complete(context, event)
    assert type(info.value) is VidgenError
    assert "video_url" not in context["ti"].xcom


# -- sensor ----------------------------------------------------------------------------------------


def sensor(generation_id: str, **kwargs: Any) -> VideoGenerationSensor:
    return VideoGenerationSensor(
        task_id="wait", generation_id=generation_id, poke_interval=0.05, deferrable=True, **kwargs
    )


def create(emulator: Emulator, timeline: Timeline) -> str:
    from airflow_provider_vidgen.hooks.vidgen import VidgenHook
    from airflow_provider_vidgen.models import VideosRequest

    emulator.queue_timeline(timeline)
    return VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=5))


def test_sensor_done_without_deferring(context: dict[str, Any], emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    result = sensor(generation_id).execute(context)
    assert result["id"] == generation_id
    assert result["status"] == "completed"


def test_sensor_defers_then_returns_the_poke_mode_dict(context: dict[str, Any], emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0.2, processing_for=0.1, actual_duration=5))
    s = sensor(generation_id, timeout=120)
    with pytest.raises(TaskDeferred) as info:
        s.execute(context)
    trigger = deferred_trigger(info)
    assert trigger.end_time == pytest.approx(time.time() + 120, abs=5)
    deferred = s.execute_complete(context, run_trigger(trigger))
    poked = VideoGenerationSensor(task_id="w", generation_id=generation_id).poke(context)
    assert deferred == poked.xcom_value  # type: ignore[union-attr]


def test_sensor_timeout_fails_without_retries_or_skips(context: dict[str, Any], emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=3600))
    s = sensor(generation_id, timeout=0.3)
    with pytest.raises(TaskDeferred) as info:
        s.execute(context)
    event = run_trigger(deferred_trigger(info))
    with pytest.raises(VidgenSensorTimeoutError) as error:
        s.execute_complete(context, event)
    assert isinstance(error.value, AirflowSensorTimeout)
    assert generation_id in str(error.value)
    with pytest.raises(AirflowSkipException):
        sensor(generation_id, timeout=0.3, soft_fail=True).execute_complete(context, event)


def test_poke_mode_timeout_names_the_generation(context: dict[str, Any], emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=3600))
    s = VideoGenerationSensor(task_id="wait", generation_id=generation_id, poke_interval=0.05, timeout=0.2)
    with pytest.raises(VidgenSensorTimeoutError, match=rf"{generation_id} did not finish.*last status: queued"):
        s.execute(context)


def test_default_deferrable_follows_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import airflow_provider_vidgen.operators.vidgen as operators
    import airflow_provider_vidgen.sensors.vidgen as sensors

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    try:
        importlib.reload(operators)
        importlib.reload(sensors)
        assert operators.VideosCreateOperator(task_id="t", prompt="p", duration=5).deferrable is True
        assert sensors.VideoGenerationSensor(task_id="s", generation_id="x").deferrable is True
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(operators)
        importlib.reload(sensors)
    assert operators.VideosCreateOperator(task_id="t", prompt="p", duration=5).deferrable is False


@pytest.mark.parametrize("failed_reads", [3, 4], ids=["outage-survived", "outage-too-long"])
def test_same_outage_same_outcome_deferred_or_not(
    context: dict[str, Any], emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, failed_reads: int
) -> None:
    """Each poll retries its read once (max_retries=1); one failed poll is tolerated (budget 1)."""
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=1))
    emulator_conn.set_timeline(Timeline(queued_for=0.3, processing_for=0.3))
    outcomes = []
    for deferrable in (False, True):
        emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=failed_reads))
        op = VideosCreateOperator(
            task_id="task",
            prompt="p",
            duration=5,
            wait_for_completion=True,
            poll_interval=0.05,
            max_consecutive_failures=1,
            deferrable=deferrable,
        )
        try:
            try:
                op.execute(context)
            except TaskDeferred as deferred:
                op.execute_complete(
                    context,
                    run_trigger(
                        deferred_trigger(
                            pytest.ExceptionInfo.from_exc_info((type(deferred), deferred, deferred.__traceback__))
                        )
                    ),
                )
            outcomes.append("completed")
        except VidgenError as err:
            outcomes.append(f"{type(err).__name__}: {str(err).replace(context['ti'].xcom['generation_id'], 'ID')}")
        emulator_conn.reset()
        emulator_conn.set_timeline(Timeline(queued_for=0.3, processing_for=0.3))
    assert outcomes[0] == outcomes[1]
    assert (outcomes[0] == "completed") == (failed_reads == 3)


@pytest.mark.parametrize("exponential_backoff", [False, True], ids=["fixed", "exponential_backoff"])
def test_deferrable_sensor_honours_exponential_backoff(
    context: dict[str, Any], emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, exponential_backoff: bool
) -> None:
    """The trigger schedules its polls as BaseSensorOperator would in poke mode: with
    ``exponential_backoff``, at least 1 s after each read and doubling; without, every ``poke_interval``."""
    from airflow_provider_vidgen.waiting import GenerationWait

    emulator_conn.set_timeline(Timeline(queued_for=1.2, processing_for=0))
    generation_id = VideosCreateOperator(task_id="create", prompt="p", duration=5).execute(context)
    with pytest.raises(TaskDeferred) as info:
        VideoGenerationSensor(
            task_id="wait",
            generation_id=generation_id,
            poke_interval=0.05,
            deferrable=True,
            exponential_backoff=exponential_backoff,
            timeout=60,
        ).execute(context)
    trigger = deferred_trigger(info)
    assert trigger.serialize()[1]["exponential_backoff"] is exponential_backoff
    scheduled: list[tuple[int, float]] = []  # (reads so far, delay before the next one)
    original = GenerationWait.next_delay

    def spy(self: GenerationWait) -> float:
        scheduled.append((self.polls, original(self)))
        return scheduled[-1][1]

    monkeypatch.setattr(GenerationWait, "next_delay", spy)
    assert run_trigger(trigger)["status"] == "completed"
    after_reads = [delay for polls, delay in scheduled[1:]]  # the first: the check right after the hand-over
    assert after_reads
    if exponential_backoff:
        assert all(delay >= 1.0 for delay in after_reads), scheduled  # BaseSensorOperator's shortest interval
    else:
        assert all(delay <= 0.05 * 1.1 for delay in after_reads), scheduled
