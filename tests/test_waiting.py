"""GenerationWait / wait_for_generation: decisions, failure budget, timeout, status-change logging."""

from __future__ import annotations

import logging

import pytest

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
