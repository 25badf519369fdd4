"""The one retry policy of the hook, the saver and the trigger: what is retried, after how long, and the
error once it is not. Sleeps and the clock are injected: nothing here waits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from airflow_provider_vidgen import protocol
from airflow_provider_vidgen.connection import ConnectionSettings
from airflow_provider_vidgen.exceptions import VidgenAuthError, VidgenMalformedResponseError, VidgenTransientError
from airflow_provider_vidgen.retry_policy import RetryPolicy, SendAgain, backoff_delay, gave_up_after
from airflow_provider_vidgen.testing import Emulator, Fault
from tests.test_waiting import FakeClock


def test_backoff_grows_is_capped_jittered_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 8.0, rng=rng) for n in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)  # jitter: no two alike
    assert backoff_delay(1, 1.0, 8.0, retry_after=30) == 30


def test_policy_is_read_from_the_connection_settings() -> None:
    settings = ConnectionSettings("c", "https://api.example", "k", max_retries=3, retry_base_delay=2, retry_max_delay=9)
    policy = RetryPolicy.from_settings(settings)
    assert policy == RetryPolicy(max_retries=3, base_delay=2, max_delay=9)
    assert policy.max_attempts == 4


def test_only_send_again_is_retryable_by_its_type() -> None:
    assert RetryPolicy.retryable(SendAgain("x"))
    # Transient, but not declared safe to send again (e.g. a create's 5xx, or a read that gave up already).
    assert not RetryPolicy.retryable(VidgenTransientError("x"))
    assert not RetryPolicy.retryable(VidgenMalformedResponseError("x"))
    assert not RetryPolicy.retryable(VidgenAuthError("x", 401))
    assert not RetryPolicy.retryable(ValueError("sending again is safe"))  # the text never counts


def test_next_delay_until_the_attempts_are_spent() -> None:
    policy = RetryPolicy(max_retries=2, base_delay=1, max_delay=8)
    assert 0.5 <= policy.next_delay(1, SendAgain("x")) <= 1  # type: ignore[operator]
    assert 1 <= policy.next_delay(2, SendAgain("x")) <= 2  # type: ignore[operator]
    assert policy.next_delay(3, SendAgain("x")) is None  # 3 attempts = 1 + max_retries
    assert policy.next_delay(1, VidgenTransientError("x")) is None
    assert policy.next_delay(1, SendAgain("x", 429, retry_after=30)) == 30


def test_give_up_errors_keep_the_status_and_say_why() -> None:
    last = SendAgain("GET /v1/result/a: HTTP 503", 503)
    spent = RetryPolicy.gave_up(last, 3)
    assert type(spent) is VidgenTransientError
    assert str(spent) == "GET /v1/result/a: HTTP 503 (gave up after 3 attempts)"
    assert spent.http_status == 503
    assert str(RetryPolicy.gave_up(last, 1)).endswith("(gave up after 1 attempt)")
    late = RetryPolicy.gave_up_at_deadline(last, 1, 600.0, 3.0)
    assert str(late) == (
        "GET /v1/result/a: HTTP 503 (gave up after 1 attempt: the next retry, due in 600.0s, would start after "
        "the wait's deadline, 3.0s from now)"
    )
    assert late.http_status == 503
    assert gave_up_after(2) == "gave up after 2 attempts"


def failing(*errors: BaseException, then: str = "ok") -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return then

    return calls, call


def test_retrying_retries_send_again_then_returns() -> None:
    clock = FakeClock()
    retried: list[tuple[int, str, float]] = []
    policy = RetryPolicy(max_retries=5, base_delay=1, max_delay=8)
    retrying = policy.retrying(
        clock=clock, sleep=clock.sleep, on_retry=lambda n, err, delay: retried.append((n, str(err), delay))
    )
    calls, call = failing(SendAgain("a"), SendAgain("b", retry_after=7))
    assert retrying(call) == "ok"
    assert len(calls) == 3
    assert [(n, text) for n, text, _ in retried] == [(1, "a"), (2, "b")]
    assert clock.sleeps == [delay for _, _, delay in retried]
    assert 0.5 <= clock.sleeps[0] <= 1
    assert clock.sleeps[1] == 7  # Retry-After is a floor


def test_retrying_raises_other_errors_as_they_are() -> None:
    clock = FakeClock()
    refused = VidgenAuthError("rejected", 401)
    calls, call = failing(SendAgain("a"), refused)
    with pytest.raises(VidgenAuthError) as info:
        RetryPolicy(max_retries=5).retrying(clock=clock, sleep=clock.sleep)(call)
    assert info.value is refused
    assert len(calls) == 2


def test_retrying_gives_up_when_the_attempts_are_spent() -> None:
    clock = FakeClock()
    calls, call = failing(*(SendAgain("HTTP 502", 502) for _ in range(10)))
    with pytest.raises(VidgenTransientError, match=r"^HTTP 502 \(gave up after 3 attempts\)$") as info:
        RetryPolicy(max_retries=2, base_delay=0.1).retrying(clock=clock, sleep=clock.sleep)(call)
    assert info.value.http_status == 502
    assert len(calls) == 3
    assert len(clock.sleeps) == 2


def test_retrying_gives_up_with_a_callers_error() -> None:
    clock = FakeClock()
    _, call = failing(*(SendAgain("cut short") for _ in range(10)))
    retrying = RetryPolicy(max_retries=1, base_delay=0.1).retrying(
        clock=clock, sleep=clock.sleep, give_up=lambda last, n: RuntimeError(f"{last}: {gave_up_after(n)}")
    )
    with pytest.raises(RuntimeError, match=r"^cut short: gave up after 2 attempts$"):
        retrying(call)


def test_retrying_never_sleeps_past_the_deadline() -> None:
    clock = FakeClock()
    calls, call = failing(*(SendAgain("HTTP 503", 503) for _ in range(50)))
    retrying = RetryPolicy(max_retries=40, base_delay=0.5, max_delay=60).retrying(
        deadline=clock.now + 3, clock=clock, sleep=clock.sleep
    )
    with pytest.raises(VidgenTransientError, match=r"would start after the wait's deadline") as info:
        retrying(call)
    assert clock.sleeps, "delays shorter than the time left are slept"
    assert clock.now < 3
    assert len(calls) == len(clock.sleeps) + 1 < 41  # stopped by the deadline, not by max_retries
    assert info.value.http_status == 503


def test_retry_after_past_the_deadline_gives_up_at_once() -> None:
    clock = FakeClock()
    calls, call = failing(SendAgain("HTTP 503", 503, retry_after=600))
    retrying = RetryPolicy(max_retries=5).retrying(deadline=clock.now + 3, clock=clock, sleep=clock.sleep)
    with pytest.raises(VidgenTransientError, match=r"due in 600.0s, would start after the wait's deadline, 3.0s"):
        retrying(call)
    assert clock.sleeps == []
    assert len(calls) == 1


def _failed_state(retrying: object, error: BaseException, as_before_tenacity_8_3: bool) -> object:
    import tenacity

    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_exception((type(error), error, None))
    if as_before_tenacity_8_3 and hasattr(state, "upcoming_sleep"):
        # tenacity < 8.3 (which Airflow 2.11 allows) has no `upcoming_sleep` and asks `stop` before `wait`.
        del state.upcoming_sleep
    return state


@pytest.mark.parametrize("as_before_tenacity_8_3", [True, False])
def test_the_deadline_holds_whichever_order_tenacity_asks_stop_and_wait(as_before_tenacity_8_3: bool) -> None:
    clock = FakeClock()
    retries: list[float] = []
    retrying = RetryPolicy(max_retries=5, base_delay=0.01, max_delay=0.01).retrying(
        deadline=clock.now + 3,
        clock=clock,
        sleep=clock.sleep,
        on_retry=lambda attempts, last, delay: retries.append(delay),
    )
    late = _failed_state(retrying, SendAgain("HTTP 429", 429, retry_after=30), as_before_tenacity_8_3)
    assert retrying.stop(late) is True  # asked before any wait: the 30 s Retry-After ends past the deadline
    with pytest.raises(VidgenTransientError, match=r"due in 30.0s, would start after the wait's deadline, 3.0s"):
        retrying.retry_error_callback(late)  # type: ignore[misc]

    soon = _failed_state(retrying, SendAgain("HTTP 503", 503), as_before_tenacity_8_3)
    assert retrying.stop(soon) is False
    delay = retrying.wait(soon)
    assert 0.005 <= delay <= 0.01
    retrying.before_sleep(soon)  # type: ignore[misc]
    assert retries == [delay]  # the delay the deadline was checked against is the one slept and logged


def test_backoff_of_a_late_attempt_is_the_cap() -> None:
    # 2 ** 1100 is past what a float holds: a connection with a large max_retries must not crash the retry.
    assert 2.5 <= backoff_delay(1100, base=1.0, cap=5.0) <= 5.0
    assert backoff_delay(5000, base=1.0, cap=5.0, retry_after=7.0) == 7.0


@pytest.mark.parametrize(
    ("status", "transient", "not_acted_on"),
    [
        *((status, True, True) for status in (408, 429)),
        *((status, True, False) for status in (500, 503, 599)),
        *((status, False, False) for status in (400, 401, 404, 409, 410)),
    ],
)
def test_status_classification(status: int, transient: bool, not_acted_on: bool) -> None:
    assert protocol.transient_status(status) is transient
    assert protocol.not_acted_on(status) is not_acted_on
    error = protocol.error_for_answer(status, "{}", "GET /x", None)
    assert isinstance(error, VidgenTransientError) is transient


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, endpoint="result"),
        Fault(kind="status", status=429, endpoint="result"),
        Fault(kind="malformed", endpoint="result"),
    ],
)
def test_async_read_failures_are_safe_to_send_again(emulator_conn: Emulator, fault: Fault) -> None:
    from airflow_provider_vidgen.async_client import ResultReader, shared_session
    from airflow_provider_vidgen.hooks.vidgen import VidgenHook
    from airflow_provider_vidgen.models import VideosRequest

    hook = VidgenHook()
    generation_id = hook.create(VideosRequest.build(model="videos", prompt="a cat", duration=5))
    emulator_conn.add_fault(fault)

    async def read() -> None:
        async with shared_session() as session:
            await ResultReader(hook.settings, generation_id).read(session)

    with pytest.raises(SendAgain) as info:
        asyncio.run(read())
    assert RetryPolicy.retryable(info.value)


def test_async_read_that_cannot_connect_is_safe_to_send_again(emulator_conn: Emulator) -> None:
    import dataclasses
    import socket

    from airflow_provider_vidgen.async_client import ResultReader, shared_session
    from airflow_provider_vidgen.hooks.vidgen import VidgenHook

    with socket.socket() as unused:  # a loopback port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings = dataclasses.replace(VidgenHook().settings, base_url=f"http://127.0.0.1:{port}")

    async def read() -> None:
        async with shared_session() as session:
            await ResultReader(settings, "proj_1").read(session)

    with pytest.raises(SendAgain, match="ClientConnectorError"):
        asyncio.run(read())


def test_async_read_of_an_unknown_id_is_not_retried(emulator_conn: Emulator) -> None:
    from airflow_provider_vidgen.async_client import ResultReader, shared_session
    from airflow_provider_vidgen.exceptions import VidgenNotFoundError
    from airflow_provider_vidgen.hooks.vidgen import VidgenHook

    async def read() -> None:
        async with shared_session() as session:
            await ResultReader(VidgenHook().settings, "proj_nope").read(session)

    with pytest.raises(VidgenNotFoundError) as info:
        asyncio.run(read())
    assert not RetryPolicy.retryable(info.value)
