"""VideoGenerationTrigger against the emulator on loopback, run on an event loop as the triggerer runs it."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import pytest

from airflow_provider_vidgen import async_client
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger

CLASSPATH = "airflow_provider_vidgen.triggers.vidgen.VideoGenerationTrigger"


def create(emulator: Emulator, timeline: Timeline) -> str:
    emulator.queue_timeline(timeline)
    return VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=5))


def trigger(generation_id: str, *, poll: float = 0.05, within: float = 20, **kwargs: Any) -> VideoGenerationTrigger:
    return VideoGenerationTrigger(
        generation_id=generation_id,
        vidgen_conn_id="vidgen_default",
        poll_interval=poll,
        end_time=time.time() + within,
        **kwargs,
    )


async def collect(t: VideoGenerationTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in t.run()]


def run_all(triggers: Iterable[VideoGenerationTrigger], bound: float = 60) -> list[list[dict[str, Any]]]:
    async def main() -> list[list[dict[str, Any]]]:
        return await asyncio.wait_for(asyncio.gather(*(collect(t) for t in triggers)), bound)

    return asyncio.run(main())


def run_one(t: VideoGenerationTrigger) -> dict[str, Any]:
    (events,) = run_all([t])
    assert len(events) == 1, events  # exactly one terminal event
    return events[0]


def test_serialize_round_trip_primitives_only(emulator_conn: Emulator) -> None:
    from airflow_provider_vidgen.waiting import GenerationWait

    wait = GenerationWait("proj_1", poll_interval=30, timeout=600, max_consecutive_failures=4, clock=time.time)
    original = VideoGenerationTrigger.continuing(wait, vidgen_conn_id="vidgen_default")
    classpath, kwargs = original.serialize()
    assert classpath == CLASSPATH
    assert json.loads(json.dumps(kwargs)) == kwargs  # primitives only
    assert emulator_conn.api_key not in json.dumps(kwargs)
    # The connection id, what a success pushes, and the wait's state, under the key set the sensor's
    # task_state_store uses too.
    assert set(kwargs) == {
        "vidgen_conn_id",
        "success_xcoms",
        "generation_id",
        "poll_interval",
        "timeout",
        "started_at",
        "max_consecutive_failures",
        "exponential_backoff",
        "max_wait",
        "last_status",
        "consecutive_failures",
        "polls",
        "created",
        "deferred_at",
        "schedule_key",
        "backoff_when_late",
    }
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.end_time == pytest.approx(wait.started_at + 600)


def test_completed(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0.1, processing_for=0.1, actual_duration=5.5))
    event = run_one(trigger(generation_id))
    assert event["status"] == "completed"
    assert event["generation_id"] == generation_id
    assert event["result"]["status"] == "completed"
    assert event["result"]["actual_duration"] == 5.5
    assert "video_url" not in event["result"]  # the task reads a fresh result (see test_events_carry_no_url)
    assert emulator_conn.creates()[0].generation_id == generation_id  # the trigger itself never creates
    assert len(emulator_conn.creates()) == 1
    assert json.loads(json.dumps(event)) == event


def test_failed(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0.1, outcome="failed", error="nope"))
    event = run_one(trigger(generation_id))
    assert event["status"] == "failed"
    assert event["result"]["error"] == "nope"
    assert "nope" in event["message"]


def test_deadline_reached(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=3600))
    event = run_one(trigger(generation_id, within=0.5))  # run_all's bound ends a trigger that overruns
    assert event["status"] == "timeout"
    assert event["last_status"] == "queued"
    assert generation_id in event["message"]


def test_transient_faults_then_success(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="status", status=503, endpoint="result", times=2))
    emulator_conn.add_fault(Fault(kind="drop", endpoint="result"))
    emulator_conn.add_fault(Fault(kind="malformed", endpoint="result"))
    event = run_one(trigger(generation_id, max_consecutive_failures=5))
    assert event["status"] == "completed"
    assert [r.fault for r in emulator_conn.requests_to("result")] == ["status", "status", "drop", "malformed", None]


def test_429_honours_retry_after(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="status", status=429, retry_after="1", endpoint="result"))
    event = run_one(trigger(generation_id))
    assert event["status"] == "completed"
    limited, ok = emulator_conn.requests_to("result")
    assert ok.time - limited.time >= 0.95  # retry_base_delay is 0.01 s: only Retry-After explains this


def test_401_ends_at_once(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0))
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps({"conn_type": "vidgen", "host": emulator_conn.base_url, "password": "sk-wrong-9"}),
    )
    event = run_one(trigger(generation_id))
    assert event["status"] == "error"
    assert event["error_class"] == "VidgenAuthError"
    assert "sk-wrong-9" not in json.dumps(event)
    assert len(emulator_conn.requests_to("result")) == 1


def test_unknown_id_ends_at_once(emulator_conn: Emulator) -> None:
    event = run_one(trigger("proj_nope"))
    assert event["status"] == "error"
    assert event["error_class"] == "VidgenNotFoundError"


def test_failure_budget_spent(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=1))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=100))
    event = run_one(trigger(generation_id, max_consecutive_failures=3))
    assert event["status"] == "error"
    assert event["error_class"] == "VidgenTransientError"
    assert "4 consecutive failed polls" in event["message"]
    # Each poll retries its read once (max_retries=1), as VidgenHook.get_result does: 4 polls x 2 reads.
    assert len(emulator_conn.requests_to("result")) == 8


def test_unknown_status_is_never_completed(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="unknown_status", value="succeeded", endpoint="result", times=3))
    event = run_one(trigger(generation_id))
    assert event["status"] == "completed"
    results = emulator_conn.requests_to("result")
    assert [r.fault for r in results] == ["unknown_status"] * 3 + [None]  # it kept polling past "succeeded"


def test_missing_key_is_an_error_event(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT", json.dumps({"conn_type": "vidgen", "host": emulator_conn.base_url})
    )
    event = run_one(trigger("proj_1"))
    assert event["status"] == "error"
    assert event["error_class"] == "VidgenConfigError"
    assert emulator_conn.requests == []


def test_one_connection_for_all_polls_of_a_trigger(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0.3, processing_for=0.3))
    run_one(trigger(generation_id))
    assert len(emulator_conn.requests_to("result")) >= 5
    assert len(emulator_conn.connections("result")) == 1


def test_shared_client_reused_across_triggers(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(async_client, "POOL_SIZE", 5)  # fewer connections than triggers
    ids = [create(emulator_conn, Timeline(queued_for=0.5, processing_for=0.5)) for _ in range(40)]
    sessions: set[int] = set()

    original = async_client.ResultReader.read

    async def spy(self, session, *args):  # type: ignore[no-untyped-def]
        sessions.add(id(session))
        return await original(self, session, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(async_client.ResultReader, "read", spy)
        results = run_all([trigger(i, poll=0.1) for i in ids])
    assert all(events[0]["status"] == "completed" for events in results)
    polls = len(emulator_conn.requests_to("result"))
    connections = len(emulator_conn.connections("result"))
    assert len(sessions) == 1  # one client for every trigger on the loop
    assert connections <= 5  # bounded by the pool, not one per trigger or per poll
    assert polls >= 5 * connections
    assert async_client._sessions == {}  # closed once the last trigger left


def test_restarted_trigger_continues_the_same_wait(emulator_conn: Emulator) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0.3, processing_for=1.0))
    first = trigger(generation_id, poll=0.1, within=30, started_at=time.time())
    _, kwargs = first.serialize()

    async def run_until_processing_then_stop() -> None:
        async def consume() -> None:
            async for _ in first.run():
                raise AssertionError("must not finish before the restart")

        task = asyncio.ensure_future(consume())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            statuses = [r.status for r in emulator_conn.requests_to("result")]
            if len(statuses) >= 4:
                break
            await asyncio.sleep(0.02)
        task.cancel()  # the triggerer stops: the trigger is cancelled mid-wait
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_until_processing_then_stop())
    polls_before = len(emulator_conn.requests_to("result"))
    restarted = VideoGenerationTrigger(**kwargs)  # as a new triggerer rebuilds it from the database
    assert restarted.end_time == first.end_time
    event = run_one(restarted)
    assert event["status"] == "completed"
    assert event["generation_id"] == generation_id
    assert len(emulator_conn.requests_to("result")) > polls_before
    assert len(emulator_conn.creates()) == 1


def test_nothing_blocks_the_event_loop(emulator_conn: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    run_one(trigger(create(emulator_conn, Timeline(queued_for=0, processing_for=0))))  # one-time imports
    ids = [create(emulator_conn, Timeline(queued_for=0.5, processing_for=0.5)) for _ in range(10)]
    # Slow answers: a blocking HTTP call or a blocking sleep would hold the loop for 0.8 s.
    emulator_conn.add_fault(Fault(kind="delay", delay=0.8, endpoint="result", times=10))

    async def main() -> list[list[dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.5  # asyncio logs any step that holds the loop longer
        return await asyncio.gather(*(collect(trigger(i, poll=0.3)) for i in ids))

    caplog.set_level(logging.WARNING, logger="asyncio")
    results = asyncio.run(main())
    assert all(events[0]["status"] == "completed" for events in results)
    slow = [r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()]
    assert slow == []


def test_connection_resolved_once_per_run(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_vidgen.triggers import vidgen as trigger_module

    lookups: list[str] = []
    original = trigger_module._aget_connection

    async def counting(conn_id: str) -> Any:
        lookups.append(conn_id)
        return await original(conn_id)

    monkeypatch.setattr(trigger_module, "_aget_connection", counting)
    ids = [create(emulator_conn, Timeline(queued_for=0.2, processing_for=0.2)) for _ in range(5)]
    results = run_all([trigger(i) for i in ids])
    assert all(events[0]["status"] == "completed" for events in results)
    assert len(emulator_conn.requests_to("result")) >= 15
    assert lookups == ["vidgen_default"]  # never per poll; one lookup shared by the loop's triggers


def test_first_check_soon_then_jittered_interval(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the trigger decides is checked, not how fast a loaded machine carries it out: the first
    # check is scheduled within 20 % of the interval; later gaps are at least the interval - 10 %.
    from airflow_provider_vidgen.waiting import GenerationWait

    first_delays: list[float] = []
    original = GenerationWait._first_delay

    def spy(self: GenerationWait, *args: Any) -> float:
        first_delays.append(original(self, *args))
        return first_delays[-1]

    monkeypatch.setattr(GenerationWait, "_first_delay", spy)
    generation_id = create(emulator_conn, Timeline(queued_for=1.6, processing_for=0))
    run_one(trigger(generation_id, poll=0.5))
    assert len(first_delays) == 1
    assert 0 <= first_delays[0] <= 0.1  # 20 % of 0.5 s
    times = [r.time for r in emulator_conn.requests_to("result")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.44 for gap in gaps), gaps  # 0.5 s - 10 % at the least


def test_poll_intervals_are_jittered_not_lock_step() -> None:
    from airflow_provider_vidgen.models import GenerationResult

    wait = trigger("proj_1", poll=30, within=3600).load_wait()
    wait.on_result(GenerationResult(id="proj_1", status="queued"))
    delays = [wait.next_delay() for _ in range(500)]
    assert all(27 <= d <= 33 for d in delays)  # 30 s +/- 10 %
    assert max(delays) - min(delays) > 4  # spread over the band: thousands of waits do not poll together


def test_restarted_trigger_spreads_its_first_check_over_an_interval(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_vidgen import waiting

    windows: list[float] = []
    monkeypatch.setattr(waiting.random, "uniform", lambda low, high: windows.append(high) or 0.0)
    fresh = trigger("proj_1", poll=30)
    restarted = trigger("proj_1", poll=30, started_at=time.time() - 600)
    assert fresh.load_wait().next_delay() == 0.0
    assert restarted.load_wait().next_delay() == 0.0
    assert windows == [2.0, 30]  # a fresh wait checks within 2 s; a restarted one anywhere in 30 s


def test_waiting_for_a_pooled_connection_is_not_a_timeout(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10 reads share a pool of 2 against answers 0.5 s late: the last ones queue for ~2 s, more than
    the read timeout (1 s) plus the connect timeout (0.5 s), yet each read on its socket takes 0.5 s."""
    from tests.conftest import conn_json

    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, timeout=1, connect_timeout=0.5, max_retries=0)
    )
    monkeypatch.setattr(async_client, "POOL_SIZE", 2)
    ids = [create(emulator_conn, Timeline(queued_for=0, processing_for=0)) for _ in range(10)]
    emulator_conn.add_fault(Fault(kind="delay", delay=0.5, endpoint="result", times=10))
    # No failure tolerated: a single false timeout ends its trigger with an error event.
    results = run_all([trigger(i, poll=1, max_consecutive_failures=0) for i in ids])
    assert [events[0]["status"] for events in results] == ["completed"] * 10, results
    assert len(emulator_conn.requests_to("result")) == 10
    assert len(emulator_conn.connections("result")) <= 2


def test_events_carry_no_signed_url(emulator_conn: Emulator) -> None:
    """Airflow logs every fired event ("Trigger fired event", with the event's repr): no URL may be in it."""
    from airflow.triggers.base import TriggerEvent

    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0.1))
    event = run_one(trigger(generation_id))
    assert event["status"] == "completed"
    logged = repr(TriggerEvent(event)) + str(TriggerEvent(event)) + json.dumps(event)
    assert emulator_conn.download_base_url not in logged
    assert "expires" not in logged
    assert "video_url" not in logged


def test_restarted_trigger_does_not_log_a_transition_again(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first triggerer logged "queued -> processing"; the restarted one (same kwargs: last_status
    still "queued") must not log that transition a second time, nor with another elapsed time."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    trigger_log = logging.getLogger("test_restarted_trigger")
    trigger_log.addHandler(Keep())
    trigger_log.setLevel(logging.INFO)
    trigger_log.propagate = False
    monkeypatch.setattr(VideoGenerationTrigger, "log", property(lambda self: trigger_log))

    def log_text() -> str:
        return "\n".join(lines)

    generation_id = create(emulator_conn, Timeline(queued_for=0.2, processing_for=1.0))
    first = trigger(generation_id, poll=0.1, within=30, started_at=time.time(), last_status="queued")
    _, kwargs = first.serialize()

    async def run_until_processing_logged_then_stop() -> None:
        async def consume() -> None:
            async for _ in first.run():
                raise AssertionError("must not finish before the restart")

        task = asyncio.ensure_future(consume())
        deadline = time.monotonic() + 10
        while "queued -> processing" not in log_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()  # the triggerer is killed mid-wait
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_until_processing_logged_then_stop())
    assert log_text().count("queued -> processing") == 1
    event = run_one(VideoGenerationTrigger(**kwargs))  # a new triggerer rebuilds it from the database
    assert event["status"] == "completed"
    text = log_text()
    assert text.count("queued -> processing") == 1, text
    assert f"Generation {generation_id} is processing" in text  # the restarted trigger says where it stands
    assert "processing -> completed" in text  # and logs the transitions it saw itself


def test_a_slow_read_does_not_run_past_the_deadline(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, timeout=120))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="delay", delay=6, endpoint="result", times=100))
    # A 120 s read timeout would hold the read for the whole 6 s delay (and then report the late
    # answer); clipped to the 0.5 s left (at least 1 s), the read gives up and the wait ends in time.
    (events,) = run_all([trigger(generation_id, within=0.5)], bound=15)
    (event,) = events
    assert event["status"] == "timeout"
    assert generation_id in event["message"]


def test_a_trigger_serialized_by_the_previous_version_still_runs(emulator_conn: Emulator) -> None:
    """A triggerer restarted after an upgrade rebuilds triggers from kwargs the previous version wrote."""
    generation_id = create(emulator_conn, Timeline(queued_for=0.2, processing_for=0.2))
    deferred_at = time.time() - 600  # the task deferred long ago: this is a restarted trigger
    old_kwargs = {
        "generation_id": generation_id,
        "vidgen_conn_id": "vidgen_default",
        "poll_interval": 0.05,
        "end_time": time.time() + 20,
        "max_consecutive_failures": 3,
        "started_at": deferred_at,
        "last_status": "queued",
        "consecutive_failures": 1,
    }
    restarted = VideoGenerationTrigger(**old_kwargs)
    assert restarted.end_time == old_kwargs["end_time"]
    wait = restarted.load_wait()
    assert wait.end_time == pytest.approx(old_kwargs["end_time"])
    assert (wait.max_consecutive_failures, wait.consecutive_failures, wait.last_status) == (3, 1, "queued")
    assert wait.resumed
    event = run_one(restarted)
    assert event["status"] == "completed"
    assert event["generation_id"] == generation_id
