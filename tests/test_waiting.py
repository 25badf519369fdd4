"""GenerationWait / wait_for_generation: decisions, failure budget, timeout, status-change logging."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_vidgen.completion_times import FirstRead
from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenGenerationFailedError,
    VidgenNotFoundError,
    VidgenTransientError,
    VidgenWaitTimeoutError,
)
from airflow_provider_vidgen.models import GenerationResult
from airflow_provider_vidgen.waiting import GenerationWait, wait_for_generation


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def result(status: str, **kw: object) -> GenerationResult:
    return GenerationResult(id="g1", status=status, **kw)  # type: ignore[arg-type]


def script(*outcomes: object):  # type: ignore[no-untyped-def]
    items = list(outcomes)

    def get_result(generation_id: str) -> GenerationResult:
        assert generation_id == "g1"
        item = items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[return-value]

    return get_result


DONE = result("completed", video_url="https://cdn/v.mp4", actualDuration=5)


def test_waits_through_statuses_and_returns_completed(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO)
    got = wait_for_generation(
        script(result("queued"), result("queued"), result("processing"), result("processing"), DONE),
        "g1",
        poll_interval=30,
        timeout=3600,
        sleep=clock.sleep,
        clock=clock,
    )
    assert got is DONE
    assert clock.sleeps == [30, 30, 30, 30]
    changes = [r.getMessage() for r in caplog.records if "Generation g1" in r.getMessage()]
    # Logged on change only, with elapsed time.
    assert changes == [
        "Generation g1 is queued (0.0s)",
        "Generation g1: queued -> processing after 60.0s",
        "Generation g1: processing -> completed after 120.0s",
    ]


def test_failed_raises_with_api_error_and_id() -> None:
    clock = FakeClock()
    with pytest.raises(VidgenGenerationFailedError, match="g1 failed: policy") as info:
        wait_for_generation(
            script(result("processing"), result("failed", error="policy")),
            "g1",
            poll_interval=5,
            timeout=100,
            sleep=clock.sleep,
            clock=clock,
        )
    assert info.value.generation_id == "g1"
    assert info.value.api_error == "policy"


def test_timeout_names_the_id_and_last_status() -> None:
    clock = FakeClock()
    with pytest.raises(VidgenWaitTimeoutError, match=r"g1 did not finish within 100s \(last status: processing\)"):
        wait_for_generation(
            script(*[result("processing")] * 10),
            "g1",
            poll_interval=30,
            timeout=100,
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.sleeps == [30, 30, 30, 10]  # the last sleep is cut to the deadline, then one last read


def test_transient_errors_within_budget_keep_waiting() -> None:
    clock = FakeClock()
    flaky = VidgenTransientError("HTTP 503")
    got = wait_for_generation(
        script(flaky, flaky, result("processing"), flaky, flaky, DONE),
        "g1",
        poll_interval=1,
        timeout=100,
        max_consecutive_failures=2,
        sleep=clock.sleep,
        clock=clock,
    )
    assert got is DONE


def test_budget_of_consecutive_failures_spent() -> None:
    clock = FakeClock()
    flaky = VidgenTransientError("HTTP 503")
    with pytest.raises(VidgenTransientError, match="after 3 consecutive failed polls"):
        wait_for_generation(
            script(flaky, flaky, flaky),
            "g1",
            poll_interval=1,
            timeout=100,
            max_consecutive_failures=2,
            sleep=clock.sleep,
            clock=clock,
        )


@pytest.mark.parametrize("error", [VidgenAuthError("HTTP 401", 401), VidgenNotFoundError("HTTP 404", 404)])
def test_fatal_errors_end_the_wait_at_once(error: Exception) -> None:
    clock = FakeClock()
    with pytest.raises(type(error)):
        wait_for_generation(script(error), "g1", poll_interval=1, timeout=100, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


def test_unknown_status_is_not_success_and_keeps_waiting(caplog: pytest.LogCaptureFixture) -> None:
    tracker = GenerationWait("g1", poll_interval=30, timeout=3600)
    assert tracker.on_result(result("succeeded", video_url="https://cdn/v.mp4")) is None
    assert tracker.on_result(result("COMPLETED", video_url="https://cdn/v.mp4")) is None
    assert "not documented" in caplog.text


def test_completed_without_url_is_not_success() -> None:
    tracker = GenerationWait("g1", poll_interval=30, timeout=3600, max_consecutive_failures=1)
    assert tracker.on_result(result("completed")) is None
    with pytest.raises(VidgenTransientError, match="no video_url"):
        tracker.on_result(result("completed"))


def test_elapsed_times_count_from_the_generations_created_timestamp(caplog: pytest.LogCaptureFixture) -> None:
    """Every process (a restarted triggerer, a rescheduled poke) reports the same clock: the API's ``created``."""
    caplog.set_level(logging.INFO)
    wall = FakeClock()
    wall.now = 1_000_091.2
    # This wait began "now" (0 s elapsed), having seen "queued" (in another process).
    tracker = GenerationWait(
        "g1", poll_interval=30, timeout=3600, last_status="queued", clock=FakeClock(), wall_clock=wall
    )
    assert tracker.on_result(result("processing", created=1_000_000)) is None
    assert "Generation g1: queued -> processing after 91.2s" in caplog.text


def test_a_resumed_wait_logs_its_first_status_not_a_transition(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # "queued": what the task saw before deferring; another process may have logged more.
    tracker = GenerationWait(
        "g1",
        poll_interval=30,
        timeout=3600,
        last_status="queued",
        clock=FakeClock(),
        wall_clock=lambda: 1_000_030.0,
        resumed=True,
    )
    tracker.on_result(result("processing", created=1_000_000))
    tracker.on_result(result("processing", created=1_000_000))
    tracker.on_result(result("completed", created=1_000_000, video_url="https://cdn/v.mp4"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["Generation g1 is processing (30.0s)", "Generation g1: processing -> completed after 30.0s"]


def test_no_failure_budget_keeps_waiting_until_the_timeout() -> None:
    clock = FakeClock()
    flaky = VidgenTransientError("HTTP 503")
    with pytest.raises(VidgenWaitTimeoutError):
        wait_for_generation(
            script(*[flaky] * 11),
            "g1",
            poll_interval=1,
            timeout=10,
            max_consecutive_failures=None,
            sleep=clock.sleep,
            clock=clock,
        )


# -- state: one key set, carried between processes --------------------------------------------------


def test_state_round_trip_primitives_under_one_key_set() -> None:
    import json
    import time

    from airflow_provider_vidgen.waiting import STATE_KEYS

    wait = GenerationWait(
        "g1", poll_interval=30, timeout=600, exponential_backoff=True, max_wait=120, schedule_key="videos/5s"
    )
    wait.on_result(result("queued", created=1_000_000))
    wait.on_error(VidgenTransientError("HTTP 503"))
    state = wait.to_state()
    assert tuple(state) == STATE_KEYS
    assert json.loads(json.dumps(state)) == state  # primitives only
    assert state["consecutive_failures"] == 1
    assert state["polls"] == 2
    assert state["last_status"] == "queued"
    assert state["created"] == 1_000_000
    # A wait on the monotonic clock saves unix times (another process has another monotonic clock).
    assert abs(state["started_at"] - time.time()) < 60
    restored = GenerationWait.from_state(state)
    assert restored.to_state() == state
    assert restored.remaining() == pytest.approx(600, abs=60)
    with pytest.raises(VidgenTransientError, match="2 consecutive failed polls"):  # the count carried over
        GenerationWait.from_state({**state, "max_consecutive_failures": 1}).on_error(VidgenTransientError("x"))


def test_state_of_an_earlier_version_loads() -> None:
    """A sensor's task_state_store entry said ``failures``; a trigger's kwargs had ``end_time`` and the
    hand-over time as ``started_at``."""
    stored = {"generation_id": "g1", "started_at": 1000.0, "last_status": "processing", "failures": 2}
    fresh = GenerationWait("g1", poll_interval=30, timeout=600, clock=lambda: 5000.0, wall_clock=lambda: 5000.0)
    wait = GenerationWait.from_state({**fresh.to_state(), **stored})
    assert (wait.started_at, wait.last_status, wait.consecutive_failures) == (1000.0, "processing", 2)
    kwargs = {
        "generation_id": "g1",
        "poll_interval": 30.0,
        "end_time": 1600.0,
        "max_consecutive_failures": None,
        "started_at": 1000.0,
        "last_status": "queued",
        "consecutive_failures": 1,
    }
    wait = GenerationWait.from_state(kwargs, wall_clock=lambda: 1500.0, clock=lambda: 1500.0)
    assert wait.end_time == 1600.0  # the same deadline
    assert (wait.max_consecutive_failures, wait.last_status, wait.consecutive_failures) == (None, "queued", 1)
    assert wait.resumed  # handed over 500 s ago, more than a poll interval: another process may have logged


def test_state_keys_of_a_later_version_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # A triggerer or worker not upgraded together with the rest: what this version knows still runs the wait.
    state = GenerationWait("g1", poll_interval=30, timeout=600).to_state()
    with caplog.at_level(logging.WARNING):
        wait = GenerationWait.from_state({**state, "first_read_rule": "v9"})
    assert wait.to_state() == state
    assert "unknown to this version" in caplog.text
    assert "first_read_rule" in caplog.text


# -- schedule ---------------------------------------------------------------------------------------


def test_exponential_backoff_lengthens_the_interval_like_base_sensor_operator() -> None:
    clock = FakeClock()
    wait = GenerationWait("g1", poll_interval=30, timeout=10_000, exponential_backoff=True, clock=clock)
    assert wait.next_delay() == 0  # the first read at once
    bands = []
    for _ in range(5):
        wait.on_result(result("processing"))
        bands.append(wait.next_delay())
    # After n reads: [b, 2b) with b = poke_interval * 2 ** (n - 2), as BaseSensorOperator._get_next_poke_interval.
    for delay, low in zip(bands, [15, 30, 60, 120, 240], strict=True):
        assert low <= delay < 2 * low
    capped = GenerationWait("g1", poll_interval=30, timeout=10_000, exponential_backoff=True, max_wait=100, polls=9)
    capped.on_result(result("processing"))
    assert capped.next_delay() == 100
    clock.now = 10_000 - 5
    assert wait.next_delay() == 5  # never past the deadline


def test_without_exponential_backoff_the_interval_is_fixed() -> None:
    wait = GenerationWait("g1", poll_interval=30, timeout=10_000, polls=20)
    wait.on_result(result("processing"))
    assert wait.next_delay() == 30


class FakeEstimate:
    """An estimate that answers ``plan`` for the key ``videos/5s`` and records what it is told."""

    def __init__(self, plan: FirstRead, late_delay: float | None = None) -> None:
        self.plan = plan
        self.late_delay = late_delay
        self.observed: list[tuple[str, float | None, float, bool]] = []

    def first_read(self, key: str, poll_interval: float) -> FirstRead:
        return self.plan if key == "videos/5s" else FirstRead()

    def observe(
        self, key: str, last_unfinished: float | None, first_completed: float, *, skipped: bool = False
    ) -> None:
        self.observed.append((key, last_unfinished, first_completed, skipped))

    def late_backoff_delay(self, key: str, elapsed: float, poll_interval: float, *, allowed: bool) -> float:
        return self.late_delay if allowed and self.late_delay is not None else poll_interval


def adaptive_wait(estimate: FakeEstimate, clock: FakeClock, **kwargs: object) -> GenerationWait:
    return GenerationWait(
        "g1",
        poll_interval=30,
        timeout=3600,
        schedule_key="videos/5s",
        estimate=estimate,
        clock=clock,
        wall_clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def test_an_estimate_schedules_the_first_read(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    estimate = FakeEstimate(FirstRead(at_age=90.0, learned_from=40))
    wait = adaptive_wait(estimate, clock)
    with caplog.at_level(logging.INFO):
        assert wait.next_delay() == 90
    assert "first read at +90s (learned from 40 completions of videos/5s)" in caplog.text
    assert GenerationWait("g1", poll_interval=30, timeout=3600, estimate=estimate).next_delay() == 0  # no key
    clock.now = 90
    wait.on_result(result("processing"))
    assert wait.next_delay() == 30  # then every poll_interval
    clock.now = 120
    wait.on_result(DONE)
    assert estimate.observed == [("videos/5s", 90.0, 120.0, True)]  # skipped: not to be learned


def test_an_exploring_wait_reads_at_a_random_phase_and_is_learned(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    estimate = FakeEstimate(FirstRead(phase=12.0, learned_from=25))
    wait = adaptive_wait(estimate, clock)
    with caplog.at_level(logging.INFO):
        assert wait.next_delay() == 12
    assert "first read at +12s, a random phase" in caplog.text
    clock.now = 12
    wait.on_result(result("processing"))
    clock.now = 42
    wait.on_result(DONE)
    assert estimate.observed == [("videos/5s", 12.0, 42.0, False)]


def test_cold_start_is_the_fixed_schedule_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    estimate = FakeEstimate(FirstRead(learned_from=3))
    wait = adaptive_wait(estimate, clock)
    with caplog.at_level(logging.INFO):
        assert wait.next_delay() == 0
        wait.on_result(result("processing"))
        assert wait.next_delay() == 30
    assert caplog.text.count("fixed schedule (no estimate yet for videos/5s)") == 1  # once per wait


def test_a_wait_taken_over_from_another_process_is_not_learned() -> None:
    clock = FakeClock()
    estimate = FakeEstimate(FirstRead())
    wait = adaptive_wait(estimate, clock, resumed=True)
    wait.on_result(result("processing"))
    wait.on_result(DONE)
    assert estimate.observed == []


def test_late_backoff_only_when_the_dag_author_allows_it() -> None:
    clock = FakeClock()
    allowed = adaptive_wait(FakeEstimate(FirstRead(), late_delay=55.0), clock, backoff_when_late=True)
    allowed.on_result(result("processing"))
    assert allowed.next_delay() == 55
    default = adaptive_wait(FakeEstimate(FirstRead(), late_delay=55.0), clock)
    default.on_result(result("processing"))
    assert default.next_delay() == 30


def test_the_schedule_options_are_part_of_the_state() -> None:
    wait = GenerationWait("g1", poll_interval=30, timeout=60, schedule_key="videos/5s", backoff_when_late=True)
    state = wait.to_state()
    assert state["schedule_key"] == "videos/5s"
    assert state["backoff_when_late"] is True
    again = GenerationWait.from_state(state)
    assert again.schedule_key == "videos/5s"
    assert again.backoff_when_late is True


def test_sync_wait_uses_the_process_estimate_with_a_key() -> None:
    from airflow_provider_vidgen.completion_times import ESTIMATE

    ESTIMATE.clear()
    clock = FakeClock()
    reads = iter([result("processing"), DONE])
    wait_for_generation(
        lambda _id: next(reads),
        "g1",
        poll_interval=30,
        timeout=600,
        sleep=clock.sleep,
        clock=clock,
        schedule_key="videos/5s/sync-test",
    )
    assert len(ESTIMATE.samples("videos/5s/sync-test")) == 1
    ESTIMATE.clear()


# -- which errors end a wait: one definition ---------------------------------------------------------


def _provider_error_classes() -> list[type[Exception]]:
    import inspect

    from airflow_provider_vidgen import exceptions

    return [
        cls
        for _, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, exceptions.VidgenError) and cls.__module__ == exceptions.__name__
    ]


@pytest.mark.parametrize("cls", _provider_error_classes(), ids=lambda cls: cls.__name__)
def test_what_ends_a_wait_is_defined_once(cls: type[Exception]) -> None:
    """The wait, and the events a trigger sends, derive from ``exceptions.WAIT_ENDING_ERRORS``: an
    error Airflow does not retry (``AirflowFailException``) or an unknown id."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_vidgen.events import result_from_event
    from airflow_provider_vidgen.exceptions import VidgenNotFoundError, ends_wait

    error = cls.__new__(cls)
    Exception.__init__(error, "boom")
    fatal = issubclass(cls, (AirflowFailException, VidgenNotFoundError))
    assert ends_wait(error) is fatal
    wait = GenerationWait("g1", poll_interval=1, timeout=100, max_consecutive_failures=5)
    if fatal:
        with pytest.raises(cls):
            wait.on_error(error)
        # The trigger's error event re-raises it as the same class in the task.
        event = {"status": "error", "generation_id": "g1", "message": "boom", "error_class": cls.__name__}
        with pytest.raises(cls, match="boom"):
            result_from_event(event, "g1", 100, lambda _id: DONE)
    else:
        wait.on_error(error)  # counted, the wait goes on
        assert wait.consecutive_failures == 1
