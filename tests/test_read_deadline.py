"""A wait's timeout holds inside each poll's retries: no retry sleeps past the deadline, and every
request's timeouts are clipped to the time left. Sleeps and the clock are injected, so the test
asserts the sleeps and timeouts the hook asked for, not how long anything took."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_vidgen.exceptions import VidgenTransientError, VidgenWaitTimeoutError
from airflow_provider_vidgen.hooks.vidgen import MIN_REQUEST_TIMEOUT, VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from airflow_provider_vidgen.waiting import wait_for_generation
from tests.conftest import conn_json

VIDEOS = VideosRequest.build(model="videos", prompt="a cat in the grass", duration=5)


class FakeClock:
    """A monotonic clock that moves only when something sleeps on it; records each sleep with the
    time that was left before ``deadline`` when it was asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.deadline: float | None = None
        self.sleeps: list[tuple[float, float | None]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        left = None if self.deadline is None else self.deadline - self.now
        self.sleeps.append((seconds, left))
        self.now += seconds


def instrumented_hook(clock: FakeClock) -> tuple[VidgenHook, list[tuple[float, float, float]]]:
    """A hook on ``clock`` and the (time left, connect timeout, read timeout) of each request it sends."""
    hook = VidgenHook()
    hook._clock = clock
    hook._sleep = clock.sleep
    session = hook.get_conn()
    original = session.request
    sent: list[tuple[float, float, float]] = []

    def request(method: str, url: str, **kwargs: Any) -> Any:
        connect, read = kwargs["timeout"]
        left = float("inf") if clock.deadline is None else clock.deadline - clock.now
        sent.append((left, connect, read))
        return original(method, url, **kwargs)

    session.request = request  # type: ignore[method-assign]
    return hook, sent


def test_retry_after_600_never_sleeps_past_the_deadline(emulator_conn: Emulator) -> None:
    clock = FakeClock()
    hook, sent = instrumented_hook(clock)
    generation_id = hook.create(VIDEOS)
    sent.clear()
    emulator_conn.add_fault(Fault(kind="status", status=503, retry_after="600", endpoint="result", times=100))
    clock.deadline = clock.now + 3
    with pytest.raises(VidgenTransientError, match=r"HTTP 503.*next retry, due in 600.0s, would start after"):
        hook.get_result(generation_id, deadline=clock.deadline)
    assert clock.sleeps == []  # 600 s asked, 3 s left: give up instead of sleeping
    assert len(emulator_conn.requests_to("result")) == 1
    assert sent == [(3.0, 3.0, 3.0)]  # connect and read timeouts clipped from 10 s and 5 s to the 3 s left


def test_backoff_sleeps_stay_inside_the_deadline(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        conn_json(emulator_conn, max_retries=20, retry_base_delay=0.5, retry_max_delay=60, timeout=30),
    )
    clock = FakeClock()
    hook, sent = instrumented_hook(clock)
    emulator_conn.add_fault(Fault(kind="status", status=503, endpoint="result", times=100))
    clock.deadline = clock.now + 3
    with pytest.raises(VidgenTransientError, match="deadline"):
        hook.get_result("proj_1", deadline=clock.deadline)
    assert clock.sleeps, "backoff below the time left is still used"
    for seconds, left in clock.sleeps:
        assert left is not None
        assert seconds < left
    assert clock.now <= clock.deadline
    assert len(sent) == len(clock.sleeps) + 1 < 21  # stopped by the deadline, not by max_retries
    for left, connect, read in sent:
        assert connect == min(10.0, max(MIN_REQUEST_TIMEOUT, left))
        assert read == min(30.0, max(MIN_REQUEST_TIMEOUT, left))


def test_without_a_deadline_the_read_keeps_its_configured_timeouts(emulator_conn: Emulator) -> None:
    hook, sent = instrumented_hook(FakeClock())
    hook.get_result(hook.create(VIDEOS))
    assert [(connect, read) for _, connect, read in sent] == [(10.0, 5.0), (10.0, 5.0)]


def test_synchronous_wait_timeout_holds_inside_a_polls_retries(emulator_conn: Emulator) -> None:
    clock = FakeClock()
    hook, sent = instrumented_hook(clock)
    generation_id = hook.create(VIDEOS)
    sent.clear()
    emulator_conn.add_fault(Fault(kind="status", status=503, retry_after="600", endpoint="result", times=100))
    start = clock.now
    clock.deadline = start + 3
    with pytest.raises(VidgenWaitTimeoutError, match="did not finish within 3s"):
        wait_for_generation(hook.get_result, generation_id, poll_interval=1, timeout=3, sleep=clock.sleep, clock=clock)
    assert clock.now - start == 3  # the wait's own sleeps: 1 + 1 + 1; the hook slept not at all
    assert [seconds for seconds, _ in clock.sleeps] == [1, 1, 1]
    assert len(sent) == 4  # one request per poll, at 0, 1, 2 and 3 s
    assert all(read <= max(MIN_REQUEST_TIMEOUT, left) for left, _, read in sent)


def test_sensor_poke_passes_its_timeout_as_the_reads_deadline(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    sensor = VideoGenerationSensor(task_id="wait", generation_id="proj_1", timeout=3, poke_interval=1)
    slept: list[float] = []
    sensor.hook._sleep = slept.append
    deadlines: list[float | None] = []
    original = sensor.hook.get_result

    def get_result(generation_id: str, **kwargs: Any) -> Any:
        deadlines.append(kwargs.get("deadline"))
        return original(generation_id, **kwargs)

    sensor.hook.get_result = get_result  # type: ignore[method-assign]
    emulator_conn.add_fault(Fault(kind="status", status=503, retry_after="600", endpoint="result", times=100))
    before = time.monotonic()
    assert sensor.poke(context) is False  # a failed poke, counted against the budget
    after = time.monotonic()
    (deadline,) = deadlines
    assert deadline is not None
    assert before < deadline <= after + 3
    assert slept == []  # Retry-After 600 with at most 3 s left: no sleep
    assert len(emulator_conn.requests_to("result")) == 1


def test_operator_check_before_deferring_keeps_inside_the_timeout(
    emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator

    operator = VideosCreateOperator(
        task_id="create",
        model="videos",
        prompt="a cat",
        duration=5,
        wait_for_completion=True,
        deferrable=True,
        timeout=3,
        poll_interval=1,
    )
    from tests.test_durable import FakeStore, new_try

    # The check runs for a generation an earlier try created (one created in this try is not read
    # before deferring): the first try creates and defers, the retry reconnects and checks.
    store = FakeStore()
    with pytest.raises(TaskDeferred):
        operator.execute(new_try(store))
    assert emulator_conn.requests_to("result") == []
    context = new_try(store)
    slept: list[float] = []
    operator.hook._sleep = slept.append
    from airflow_provider_vidgen.operators import vidgen

    real_decide = vidgen.decide

    def decide_then_fail_reads(*args: Any, **kwargs: Any) -> Any:  # the durable decision reads first
        decision = real_decide(*args, **kwargs)
        emulator_conn.add_fault(Fault(kind="status", status=503, retry_after="600", endpoint="result", times=100))
        return decision

    monkeypatch.setattr(vidgen, "decide", decide_then_fail_reads)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    assert deferred.value.trigger.end_time <= time.time() + 3  # the trigger gets what is left, not 3 s more
    assert deferred.value.trigger.end_time > before
    assert slept == []  # Retry-After 600 with at most 3 s of timeout: the check gives up and defers at once
    assert len(emulator_conn.requests_to("result")) == 2  # the durable decision's read, then the check


def test_rescheduled_poke_counts_the_timeout_from_the_first_poke(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In reschedule mode without a task_state_store (Airflow < 3.3), a late poke's read keeps inside
    what is left of the sensor's timeout, which Airflow counts from the first poke, not from this one."""
    import datetime

    from airflow.exceptions import AirflowRescheduleException

    from tests.conftest import FakeTI

    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        conn_json(emulator_conn, max_retries=8, retry_base_delay=4, retry_max_delay=60),
    )
    first_poke = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=55)
    ti: Any = FakeTI()
    ti.try_number, ti.max_tries, ti.dag_id, ti.run_id = 1, 0, "dag", "run"
    ti.get_first_reschedule_date = lambda _context: first_poke  # Airflow 3
    try:
        import airflow.sensors.base as airflow2_sensor  # Airflow 2: read from the database

        monkeypatch.setattr(airflow2_sensor, "_orig_start_date", lambda **_: first_poke, raising=False)
    except ImportError:
        pass
    sensor = VideoGenerationSensor(
        task_id="wait", generation_id="proj_1", mode="reschedule", timeout=60, poke_interval=1
    )
    clock = FakeClock()
    clock.now = time.monotonic()  # the sensor's deadline is a monotonic time; the hook's sleeps move this clock
    sensor.hook._clock = clock
    sensor.hook._sleep = clock.sleep
    emulator_conn.add_fault(Fault(kind="status", status=503, endpoint="result", times=100))
    with pytest.raises(AirflowRescheduleException):
        sensor.execute({"ti": ti})
    # 5 s of the 60 s were left: backoff (2-4 s, then 4-8 s, ...) stops before it would pass them.
    assert sum(seconds for seconds, _ in clock.sleeps) < 5


def test_deferrable_sensor_gives_the_trigger_what_is_left_of_its_timeout(
    emulator_conn: Emulator, context: dict[str, Any]
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    hook = VidgenHook()
    emulator_conn.queue_timeline(Timeline(queued_for=3600))
    generation_id = hook.create(VIDEOS)
    emulator_conn.add_fault(Fault(kind="delay", delay=1.5, endpoint="result", times=1))  # a slow first check
    sensor = VideoGenerationSensor(
        task_id="wait", generation_id=generation_id, deferrable=True, timeout=30, poke_interval=1
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    # The deadline is the wait's: 30 s from its start, the check's 1.5 s included (not 30 s after it).
    assert deferred.value.trigger.end_time == pytest.approx(sensor.wait.started_at + 30, abs=0.5)
