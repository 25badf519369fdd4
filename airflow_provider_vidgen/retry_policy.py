"""When a request is sent again, after how long, and the error once it is not: one policy for every client.

The synchronous hook, the video saver and the trigger's polls all retry by :class:`RetryPolicy`:
what is retried (a :class:`SendAgain` failure, by type, never by message text), the delay
(full-jitter exponential backoff, never shorter than the server's ``Retry-After``), when to give up
(the attempts are spent, or the next delay would not end before a deadline) and the error then
raised. Free of any HTTP client; ``tenacity`` is imported only when a :meth:`RetryPolicy.retrying`
is built.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_vidgen.connection_form import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_BASE_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
)
from airflow_provider_vidgen.exceptions import VidgenTransientError

if TYPE_CHECKING:
    import tenacity

    from airflow_provider_vidgen.connection import ConnectionSettings


class SendAgain(VidgenTransientError):
    """A failure after which sending the same request again is safe (the only failure retried).

    Raised by the clients when they know nothing was acted on (nothing was sent, 408, 429) or the
    request is a read; a create whose outcome is unknown is never one.

    :param message: What went wrong.
    :param http_status: HTTP status, when there was one.
    :param retry_after: Seconds the server asked to wait (``Retry-After``), when it did.
    :param refresh_url: The URL it was sent to is no longer good: ask the API for a fresh one first.
    """

    def __init__(
        self,
        message: str,
        http_status: int | None = None,
        retry_after: float | None = None,
        *,
        refresh_url: bool = False,
    ) -> None:
        super().__init__(message, http_status, retry_after)
        self.refresh_url = refresh_url


def backoff_delay(
    attempt: int, base: float, cap: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``attempt`` (1-based): full-jitter exponential backoff.

    :param attempt: How many attempts have failed so far.
    :param base: The first delay's ceiling, seconds (doubles with each attempt).
    :param cap: The longest ceiling, seconds.
    :param retry_after: The server's ``Retry-After``, seconds: a floor, the delay is never shorter.
    :param rng: Random source of the jitter (the ``random`` module by default).
    """
    # The exponent is bounded: 2.0 ** 1024 is past what a float holds, and 2 ** 64 times any base is past any cap.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    delay = (rng or random).uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def gave_up_after(attempts: int) -> str:
    """``"gave up after 3 attempts"``: the words every give-up message uses."""
    return f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}"


@dataclass(frozen=True)
class RetryPolicy:
    """How one request is retried.

    :param max_retries: Retries after a retryable failure (0: the request is sent once).
    :param base_delay: First backoff delay, seconds (doubles each retry, with jitter).
    :param max_delay: Longest backoff delay, seconds (a ``Retry-After`` may ask for more).
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay: float = DEFAULT_RETRY_BASE_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> RetryPolicy:
        """The policy of a connection (its ``max_retries``, ``retry_base_delay``, ``retry_max_delay``).

        :param settings: The connection's settings.
        """
        return cls(settings.max_retries, settings.retry_base_delay, settings.retry_max_delay)

    @property
    def max_attempts(self) -> int:
        """How many times a request is sent at most."""
        return self.max_retries + 1

    @staticmethod
    def retryable(error: BaseException) -> bool:
        """Whether the request that failed with ``error`` may be sent again (it is a :class:`SendAgain`)."""
        return isinstance(error, SendAgain)

    def delay(self, attempts: int, error: BaseException | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``attempts`` failed attempts, ``error``'s ``Retry-After`` honoured.

        :param attempts: Failed attempts so far (1 after the first).
        :param error: The last failure (its ``retry_after``, if any, is a floor).
        :param rng: Random source of the jitter.
        """
        retry_after = getattr(error, "retry_after", None)
        return backoff_delay(attempts, self.base_delay, self.max_delay, retry_after, rng)

    def next_delay(self, attempts: int, error: BaseException) -> float | None:
        """Seconds to wait before sending again after ``attempts`` failed attempts, ``None`` when the
        request is not sent again (``error`` is not retryable, or the attempts are spent).

        A loop that drives its own sleeps (the trigger's) asks this after each failure; on ``None`` it
        reports :meth:`gave_up` for a retryable ``error``, ``error`` itself otherwise.

        :param attempts: Failed attempts so far, ``error``'s included.
        :param error: The last failure.
        """
        if not self.retryable(error) or attempts >= self.max_attempts:
            return None
        return self.delay(attempts, error)

    @staticmethod
    def gave_up(last: BaseException, attempts: int) -> VidgenTransientError:
        """The error once a request's attempts are spent.

        :param last: The last failure.
        :param attempts: How many attempts were made.
        """
        return VidgenTransientError(f"{last} ({gave_up_after(attempts)})", getattr(last, "http_status", None))

    @staticmethod
    def gave_up_at_deadline(last: BaseException, attempts: int, delay: float, left: float) -> VidgenTransientError:
        """The error when the next retry would not start before a deadline.

        :param last: The last failure.
        :param attempts: How many attempts were made.
        :param delay: The delay the next retry was due after, seconds.
        :param left: Seconds left before the deadline.
        """
        return VidgenTransientError(
            f"{last} ({gave_up_after(attempts)}: the next retry, due in {delay:.1f}s, would start after the "
            f"wait's deadline, {max(0.0, left):.1f}s from now)",
            getattr(last, "http_status", None),
        )

    def retrying(
        self,
        *,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        give_up: Callable[[BaseException, int], BaseException] | None = None,
    ) -> tenacity.Retrying:
        """A ``tenacity.Retrying`` that runs a request by this policy.

        Retries :class:`SendAgain` failures; any other exception is raised as it is. Once the
        attempts are spent it raises ``give_up(last, attempts)`` (default :meth:`gave_up`); when the
        next delay would not end before ``deadline`` it raises :meth:`gave_up_at_deadline` instead
        of sleeping.

        :param deadline: A ``clock()`` value no retry sleeps past.
        :param clock: The monotonic clock ``deadline`` is read on.
        :param sleep: Sleeps between attempts.
        :param on_retry: Called before each sleep with (failed attempts, the failure, the delay).
        :param give_up: Builds the error raised once the attempts are spent.
        """
        import tenacity

        def left() -> float:
            return float("inf") if deadline is None else deadline - clock()

        def delay_of(state: tenacity.RetryCallState) -> float:
            # One delay per failed attempt, drawn once, for the deadline check, the sleep and the log
            # alike: tenacity < 8.3 (which Airflow 2.11 allows) asks `stop` before `wait` and has no
            # `upcoming_sleep`, so neither may be relied on.
            drawn: tuple[int, float] | None = getattr(state, _DELAY_ATTRIBUTE, None)
            if drawn is None or drawn[0] != state.attempt_number:
                drawn = (state.attempt_number, self.delay(state.attempt_number, _failure(state)))
                setattr(state, _DELAY_ATTRIBUTE, drawn)
            return drawn[1]

        def past_deadline(state: tenacity.RetryCallState) -> bool:
            return deadline is not None and delay_of(state) >= left()

        def raise_give_up(state: tenacity.RetryCallState) -> None:
            last, attempts = _failure(state), state.attempt_number
            if attempts >= self.max_attempts:
                raise (give_up or self.gave_up)(last, attempts) from None
            raise self.gave_up_at_deadline(last, attempts, delay_of(state), left()) from None

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None:
                on_retry(state.attempt_number, _failure(state), delay_of(state))

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(self.retryable),
            wait=delay_of,
            stop=lambda state: state.attempt_number >= self.max_attempts or past_deadline(state),
            sleep=sleep,
            before_sleep=before_sleep,
            retry_error_callback=raise_give_up,
        )


#: Where :meth:`RetryPolicy.retrying` keeps the delay it drew for an attempt, on tenacity's call state.
_DELAY_ATTRIBUTE = "_vidgen_delay"


def _failure(state: tenacity.RetryCallState) -> BaseException:
    """The exception the attempt of ``state`` failed with."""
    error = state.outcome.exception() if state.outcome is not None else None
    assert error is not None
    return error


__all__ = ["RetryPolicy", "SendAgain", "backoff_delay", "gave_up_after"]
