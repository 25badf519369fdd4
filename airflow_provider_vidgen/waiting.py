"""How a wait on a generation reads each poll. One place for the operators, the sensor and the trigger.

:class:`WaitTracker` turns a stream of poll outcomes (a result or an error) into a decision:
done (``completed``), raise (``failed``, a non-transient error, the failure budget spent) or
keep waiting. It logs each status change with the elapsed time, and nothing else per poll.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from airflow_provider_vidgen import metrics
from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenConfigError,
    VidgenError,
    VidgenGenerationFailedError,
    VidgenNotFoundError,
    VidgenRequestRejectedError,
    VidgenTransientError,
    VidgenValidationError,
    VidgenWaitTimeoutError,
)
from airflow_provider_vidgen.models import GenerationResult

DEFAULT_MAX_CONSECUTIVE_FAILURES = 10


class Log(Protocol):
    """What the wait logs through: a stdlib logger, or Airflow 3's structlog task logger."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


#: Errors that no amount of waiting fixes: they end the wait at once.
FATAL_ERRORS: tuple[type[VidgenError], ...] = (
    VidgenAuthError,
    VidgenConfigError,
    VidgenNotFoundError,
    VidgenRequestRejectedError,
    VidgenValidationError,
)


class WaitTracker:
    """State of one wait on one generation.

    Elapsed times in the log count from the generation's own start (its ``created`` timestamp, as
    the API reports it) when known, else from the start of the wait, so every mode and every
    process (a restarted triggerer, a rescheduled poke) logs the same clock.

    :param generation_id: The generation being waited on.
    :param max_consecutive_failures: How many polls in a row may fail transiently before giving up;
        ``None``: no limit (failed polls are logged and the wait goes on until its timeout).
    :param log: Where status changes and transient failures are logged.
    :param started_at: ``clock()`` value when the wait began (default: now).
    :param clock: Monotonic clock, seconds.
    :param wall_clock: Unix time, seconds (to count from the generation's ``created``).
    :param resumed: This process takes over a wait that another one may have logged already (a
        restarted trigger): the first status it sees is logged as a status, never as a transition
        from ``last_status``, which the earlier process may already have logged (or not seen).
    """

    def __init__(
        self,
        generation_id: str,
        *,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        log: Log | None = None,
        started_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        resumed: bool = False,
    ) -> None:
        if max_consecutive_failures is not None and (
            isinstance(max_consecutive_failures, bool)
            or not isinstance(max_consecutive_failures, int)
            or max_consecutive_failures < 0
        ):
            raise ValueError(f"max_consecutive_failures must be a whole number >= 0, got {max_consecutive_failures!r}")
        self.generation_id = generation_id
        self.max_consecutive_failures = max_consecutive_failures
        self.log: Log = log or logging.getLogger(__name__)
        self.clock = clock
        self.wall_clock = wall_clock
        self.started_at = clock() if started_at is None else started_at
        self.created: float | None = None
        self.resumed = resumed
        self.last_status: str | None = None
        self.consecutive_failures = 0
        self.polls = 0

    def elapsed(self) -> float:
        """Seconds since the generation was created (when the API said so), else since the wait began."""
        if self.created is not None:
            since_created = self.wall_clock() - self.created
            if since_created >= 0:  # a server clock ahead of ours: fall back to the wait's own clock
                return since_created
        return self.clock() - self.started_at

    def on_result(self, result: GenerationResult) -> GenerationResult | None:
        """Read one successful poll; return the result when ``completed``, ``None`` to keep waiting.

        :param result: What the result endpoint answered.
        :raises VidgenGenerationFailedError: the generation ended ``failed``.
        """
        self.polls += 1
        if result.created is not None:
            self.created = float(result.created)
        self._note_status(result.status)
        metrics.poll_result(self, result)
        if result.is_completed and not result.video_url:
            # "completed" without a URL breaks the documented contract: do not report success;
            # treat it like a transient failure (the next poll may carry the URL).
            self.on_error(VidgenTransientError(f"Generation {self.generation_id} is completed but has no video_url"))
            return None
        self.consecutive_failures = 0
        if result.is_completed:
            return result
        if result.is_failed:
            raise VidgenGenerationFailedError(self.generation_id, result.error)
        return None

    def on_error(self, error: Exception) -> None:
        """Read one failed poll: re-raise what waiting cannot fix, or count it and keep waiting.

        :param error: The exception the poll raised.
        :raises VidgenTransientError: the budget of consecutive failures is spent.
        """
        metrics.read_error(error)
        if isinstance(error, FATAL_ERRORS) or not isinstance(error, VidgenError):
            raise error
        self.consecutive_failures += 1
        limit = self.max_consecutive_failures
        if limit is not None and self.consecutive_failures > limit:
            raise VidgenTransientError(
                f"Gave up waiting for generation {self.generation_id} after {self.consecutive_failures} "
                f"consecutive failed polls; last error: {error}. The generation may still finish: "
                f"wait for it again with VideoGenerationSensor(generation_id={self.generation_id!r})."
            ) from error
        self.log.warning(
            "Generation %s: poll failed (%d of %s consecutive failures allowed), still waiting: %s",
            self.generation_id,
            self.consecutive_failures,
            "unlimited" if limit is None else limit,
            error,
        )

    def timeout_error(self, timeout: float) -> VidgenWaitTimeoutError:
        """The error to raise when the wait is past ``timeout`` seconds."""
        return VidgenWaitTimeoutError(self.generation_id, timeout, self.last_status)

    def _note_status(self, status: str) -> None:
        # Statuses only move forward: once this process has seen one, the next change is one it saw happen.
        resumed, self.resumed = self.resumed, False
        if status == self.last_status:
            return
        known = status in ("queued", "processing", "completed", "failed")
        if self.last_status is None or resumed:
            self.log.info("Generation %s is %s (%.1fs)", self.generation_id, status, self.elapsed())
        else:
            self.log.info(
                "Generation %s: %s -> %s after %.1fs",
                self.generation_id,
                self.last_status,
                status,
                self.elapsed(),
            )
        if not known:
            self.log.warning(
                "Generation %s: status %r is not documented; treated as still in progress (never as success)",
                self.generation_id,
                status,
            )
        self.last_status = status


def _takes_deadline(get_result: Callable[..., GenerationResult]) -> bool:
    try:
        return "deadline" in inspect.signature(get_result).parameters
    except (TypeError, ValueError):
        return False


def wait_for_generation(
    get_result: Callable[..., GenerationResult],
    generation_id: str,
    *,
    poll_interval: float,
    timeout: float,
    max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    log: Log | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> GenerationResult:
    """Poll ``get_result`` until the generation completes; return the completed result.

    :param get_result: Reads one result (e.g. ``VidgenHook.get_result``). If it takes a keyword
        ``deadline``, it gets the wait's deadline (a ``clock()`` value), so a poll's own retries
        never run past the timeout.
    :param generation_id: The generation to wait on.
    :param poll_interval: Seconds between polls.
    :param timeout: Seconds after which to give up with :class:`VidgenWaitTimeoutError`.
    :param max_consecutive_failures: Transient poll failures tolerated in a row (``None``: no limit).
    :param log: Logger for status changes.
    :param sleep: Sleep function (injectable for tests).
    :param clock: Monotonic clock (injectable for tests).
    :raises VidgenGenerationFailedError: the generation failed.
    :raises VidgenWaitTimeoutError: not finished within ``timeout``.
    """
    tracker = WaitTracker(generation_id, max_consecutive_failures=max_consecutive_failures, log=log, clock=clock)
    deadline = tracker.started_at + timeout
    # A reader that takes the deadline (VidgenHook.get_result) keeps each poll's retries inside it.
    takes_deadline = _takes_deadline(get_result)
    while True:
        try:
            result = get_result(generation_id, deadline=deadline) if takes_deadline else get_result(generation_id)
        except VidgenError as err:
            tracker.on_error(err)
        else:
            done = tracker.on_result(result)
            if done is not None:
                return done
        remaining = deadline - clock()
        if remaining <= 0:
            raise tracker.timeout_error(timeout)
        sleep(min(poll_interval, remaining))
