"""One wait on one generation: its state, its schedule and its verdict. One place for the operators,
the sensor (every mode) and the trigger.

:class:`GenerationWait` owns everything a wait knows and decides:

- **state** (:meth:`~GenerationWait.to_state` / :meth:`~GenerationWait.from_state`): primitives under
  one key set (:data:`STATE_KEYS`), saved alike in a rescheduled sensor's task_state_store and in the
  trigger's kwargs, so a wait carries over to another process (a poke, a trigger, a restarted
  triggerer) unchanged;
- **schedule** (:meth:`~GenerationWait.next_delay`): when to read next (the first check, the poll
  interval with its jitter, the sensor's ``exponential_backoff``), never past the deadline;
- **verdict** (:meth:`~GenerationWait.on_result`, :meth:`~GenerationWait.on_error`,
  :meth:`~GenerationWait.timeout_error`): done (``completed``), raise (``failed``, an error that ends
  a wait, the failure budget spent, past the timeout) or keep waiting. It logs each status change
  with the elapsed time, and nothing else per poll.

:func:`wait_for_generation` is the synchronous wait; :func:`check_then_defer` the deferrable one's
start (one read on the worker, then the trigger).
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from airflow_provider_vidgen import metrics
from airflow_provider_vidgen.exceptions import (
    VidgenError,
    VidgenGenerationFailedError,
    VidgenTransientError,
    VidgenWaitTimeoutError,
    ends_wait,
)

if TYPE_CHECKING:
    from airflow_provider_vidgen.completion_times import FirstRead
    from airflow_provider_vidgen.models import GenerationResult

DEFAULT_MAX_CONSECUTIVE_FAILURES = 10
#: Polls are spread by +/- this fraction of the interval, so mapped tasks do not poll in lock-step.
JITTER = 0.1
#: A spread wait's first check comes within this many seconds of its start (at most 20 % of the
#: interval); one that another process took over long after the hand-over, within a whole interval.
FIRST_CHECK_WITHIN = 2.0
#: The shortest interval of ``exponential_backoff``, seconds (as ``BaseSensorOperator``'s).
MIN_BACKOFF = 1.0

#: The keys of :meth:`GenerationWait.to_state`, the same for the sensor's task_state_store and the
#: trigger's kwargs. Times are unix seconds.
STATE_KEYS = (
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
)
#: What a wait learns as it runs (the rest of the state are the task's options): a task that carries
#: a wait over from an earlier process takes these from it and its options from itself.
OBSERVED_KEYS = ("started_at", "last_status", "consecutive_failures", "polls", "created", "deferred_at")
#: Names an earlier version saved under: the sensor's task_state_store said ``failures``.
_RENAMED = {"failures": "consecutive_failures"}


def observed(state: dict[str, Any]) -> dict[str, Any]:
    """The part of a saved state that the wait observed (:data:`OBSERVED_KEYS`), under today's names."""
    values = {_RENAMED.get(key, key): value for key, value in state.items()}
    return {key: value for key, value in values.items() if key in OBSERVED_KEYS}


class Log(Protocol):
    """What the wait logs through: a stdlib logger, or Airflow 3's structlog task logger."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


class Estimate(Protocol):
    """What a wait learns its schedule from (adaptive polling); none: the fixed schedule.

    Keys are :attr:`GenerationWait.schedule_key` values (family, model, duration, mode). The
    process-wide one is :data:`airflow_provider_vidgen.completion_times.ESTIMATE`.
    """

    def first_read(self, key: str, poll_interval: float) -> FirstRead:
        """When this wait reads first (see :class:`~airflow_provider_vidgen.completion_times.FirstRead`)."""
        ...

    def observe(
        self, key: str, last_unfinished: float | None, first_completed: float, *, skipped: bool = False
    ) -> None:
        """A generation of ``key`` completed after ``last_unfinished`` seconds since ``created`` (the
        last read that saw it unfinished; ``None``: none did) and by ``first_completed`` (the read that
        saw it completed); ``skipped``: the wait skipped reads on the estimate's advice."""
        ...

    def late_backoff_delay(self, key: str, elapsed: float, poll_interval: float, *, allowed: bool) -> float:
        """The delay before the next read of a generation ``elapsed`` seconds old (>= ``poll_interval``)."""
        ...


def _count(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


class GenerationWait:
    """One wait on one generation, in whichever process it runs.

    Elapsed times in the log count from the generation's own start (its ``created`` timestamp, as
    the API reports it) when known, else from the start of the wait, so every mode and every
    process (a restarted triggerer, a rescheduled poke) logs the same clock.

    :param generation_id: The generation being waited on.
    :param poll_interval: Seconds between reads (the operators' ``poll_interval``, the sensor's
        ``poke_interval``).
    :param timeout: Seconds from ``started_at`` after which the wait ends with a timeout.
    :param started_at: ``clock()`` value when the wait began (default: now).
    :param max_consecutive_failures: How many polls in a row may fail transiently before giving up;
        ``None``: no limit (failed polls are logged and the wait goes on until its timeout).
    :param exponential_backoff: Lengthen the interval after each read, as ``BaseSensorOperator``
        does (the sensor's option; honoured wherever the wait runs, the trigger included).
    :param max_wait: With ``exponential_backoff``, the longest interval, seconds (``None``: no cap).
    :param last_status: The last status this wait saw (in any process).
    :param consecutive_failures: Failed polls in a row so far.
    :param polls: Reads so far (in any process).
    :param created: The generation's ``created`` (unix seconds), once a read reported it.
    :param deferred_at: Unix time the wait was last handed to a trigger (:meth:`hand_over`).
    :param schedule_key: What kind of generation this is, for an ``estimate`` (``None``: the fixed
        schedule, adaptive polling off).
    :param backoff_when_late: Let the interval grow towards 60 s once the generation is far past the
        time such generations take (needs an ``estimate`` that knows the ``schedule_key``).
    :param log: Where status changes and transient failures are logged.
    :param clock: This wait's clock, seconds (monotonic by default; the wall clock for a wait that is
        saved and resumed elsewhere).
    :param wall_clock: Unix time, seconds (to count from ``created``; the state's times).
    :param spread: Spread reads over time, as many waits in one process need (the trigger): the first
        check within :data:`FIRST_CHECK_WITHIN` (a whole interval when ``resumed``), later reads at
        ``poll_interval`` +/- :data:`JITTER`. Without: the first read at once, then every ``poll_interval``.
    :param estimate: Where the first read's time may be learnt from (see :class:`Estimate`).
    :param resumed: This process takes over a wait that another one may have logged already (a
        restarted trigger): the first status it sees is logged as a status, never as a transition
        from ``last_status``, which the earlier process may already have logged (or not seen).
        Default: the wait was handed over (``deferred_at``) more than a poll interval ago.
    """

    def __init__(
        self,
        generation_id: str,
        *,
        poll_interval: float,
        timeout: float,
        started_at: float | None = None,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        exponential_backoff: bool = False,
        max_wait: float | None = None,
        last_status: str | None = None,
        consecutive_failures: int = 0,
        polls: int = 0,
        created: float | None = None,
        deferred_at: float | None = None,
        schedule_key: str | None = None,
        backoff_when_late: bool = False,
        log: Log | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        spread: bool = False,
        estimate: Estimate | None = None,
        resumed: bool | None = None,
    ) -> None:
        self.generation_id = str(generation_id)
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self.max_consecutive_failures = _count("max_consecutive_failures", max_consecutive_failures, allow_none=True)
        self.exponential_backoff = bool(exponential_backoff)
        self.max_wait = None if max_wait is None else float(max_wait)
        self.last_status = None if last_status is None else str(last_status)
        self.consecutive_failures = _count("consecutive_failures", consecutive_failures) or 0
        self.polls = _count("polls", polls) or 0
        self.created = None if created is None else float(created)
        self.deferred_at = None if deferred_at is None else float(deferred_at)
        self.schedule_key = None if schedule_key is None else str(schedule_key)
        self.backoff_when_late = bool(backoff_when_late)
        self.log: Log = log or logging.getLogger(__name__)
        self.clock = clock
        self.wall_clock = wall_clock
        self.started_at = clock() if started_at is None else float(started_at)
        self.spread = spread
        self.estimate = estimate
        if resumed is None:
            resumed = self.deferred_at is not None and wall_clock() - self.deferred_at > self.poll_interval
        self.resumed = resumed
        self._taken_over = resumed  # kept for the schedule: `resumed` is spent by the first status logged
        self._reads_here = 0
        self._last_in_progress: float | None = None
        self._skipped = False  # the first read was put off on the estimate's advice

    # -- state ---------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The wait as primitives, under :data:`STATE_KEYS` (times in unix seconds); no secrets."""
        return {
            "generation_id": self.generation_id,
            "poll_interval": self.poll_interval,
            "timeout": self.timeout,
            "started_at": self._to_wall(self.started_at),
            "max_consecutive_failures": self.max_consecutive_failures,
            "exponential_backoff": self.exponential_backoff,
            "max_wait": self.max_wait,
            "last_status": self.last_status,
            "consecutive_failures": self.consecutive_failures,
            "polls": self.polls,
            "created": self.created,
            "deferred_at": self.deferred_at,
            "schedule_key": self.schedule_key,
            "backoff_when_late": self.backoff_when_late,
        }

    def hand_over(self) -> dict[str, Any]:
        """:meth:`to_state`, marked as handed over now (to the trigger the task defers to)."""
        self.deferred_at = self.wall_clock()
        return self.to_state()

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        log: Log | None = None,
        clock: Callable[[], float] = time.time,
        wall_clock: Callable[[], float] = time.time,
        spread: bool = False,
        estimate: Estimate | None = None,
    ) -> GenerationWait:
        """The wait :meth:`to_state` saved, in this process.

        Also reads the state of earlier versions: a sensor's task_state_store entry (``failures``) and
        the kwargs of a trigger serialized before (``end_time``; its ``started_at`` was the hand-over).

        :param state: What :meth:`to_state` returned (keys of :data:`STATE_KEYS`).
        :param log: Where this process logs the wait.
        :param clock: The clock the wait runs on here (the wall clock by default).
        :param wall_clock: Unix time.
        :param spread: See :class:`GenerationWait`.
        :param estimate: See :class:`GenerationWait`.
        :raises ValueError: a value of the wrong kind (a key that is not part of the state is logged and
            ignored).
        """
        values = {_RENAMED.get(key, key): value for key, value in state.items()}
        if "timeout" not in values and "end_time" in values:  # a trigger serialized by an earlier version
            handed_over = float(values["started_at"]) if values.get("started_at") is not None else wall_clock()
            values["started_at"] = handed_over
            values.setdefault("deferred_at", handed_over)
            values["timeout"] = float(values.pop("end_time")) - handed_over
        unknown = set(values) - set(STATE_KEYS)
        if unknown:
            # Written by a later version (a triggerer or worker not upgraded together): what this
            # version knows of the wait still runs it.
            (log or logging.getLogger(__name__)).warning(
                "Wait state keys %s are unknown to this version of the provider: ignored", sorted(unknown)
            )
            for key in unknown:
                del values[key]
        started_at = values.pop("started_at", None)
        if started_at is not None and clock is not wall_clock:
            started_at = float(started_at) - wall_clock() + clock()
        return cls(
            **values,
            started_at=started_at,
            log=log,
            clock=clock,
            wall_clock=wall_clock,
            spread=spread,
            estimate=estimate,
        )

    def _to_wall(self, at: float) -> float:
        return at if self.clock is self.wall_clock else at + self.wall_clock() - self.clock()

    # -- schedule -------------------------------------------------------------------------------------

    @property
    def end_time(self) -> float:
        """The deadline, a ``clock()`` value."""
        return self.started_at + self.timeout

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past it)."""
        return self.end_time - self.clock()

    def elapsed(self) -> float:
        """Seconds since the generation was created (when the API said so), else since the wait began."""
        if self.created is not None:
            since_created = self.wall_clock() - self.created
            if since_created >= 0:  # a server clock ahead of ours: fall back to the wait's own clock
                return since_created
        return self.clock() - self.started_at

    def next_delay(self) -> float:
        """Seconds until the next read, never past the deadline.

        Before this process's first read: at once (``spread``: within :data:`FIRST_CHECK_WITHIN`, or a
        whole interval for a wait taken over long after its hand-over), or when the ``estimate`` says.
        With an ``estimate`` and a ``schedule_key`` (adaptive polling) the first read may come later:
        at the age the estimate says reads cannot succeed before, or (an exploring wait) a random
        phase within one interval after the normal first check; the decision is logged once.
        After a read: ``poll_interval`` (``spread``: +/- :data:`JITTER`), or with ``exponential_backoff``
        the interval ``BaseSensorOperator`` would choose after as many reads (at least
        :data:`MIN_BACKOFF`, doubling, jittered, capped at ``max_wait``); with ``backoff_when_late``,
        longer (towards 60 s) once the generation is far past the expected time. Never shorter than
        ``poll_interval`` (less its jitter) between reads.
        """
        if self._reads_here == 0:
            delay = self._first_delay()
        elif self.exponential_backoff:
            delay = self._backoff_interval()
        else:
            delay = self._interval()
            if self.spread:
                delay *= random.uniform(1 - JITTER, 1 + JITTER)
        return max(0.0, min(delay, self.remaining()))

    def _interval(self) -> float:
        if self.backoff_when_late and self.estimate is not None and self.schedule_key is not None:
            return self.estimate.late_backoff_delay(self.schedule_key, self.elapsed(), self.poll_interval, allowed=True)
        return self.poll_interval

    def _normal_first_delay(self) -> float:
        if not self.spread:
            return 0.0
        window = self.poll_interval if self._taken_over else min(FIRST_CHECK_WITHIN, self.poll_interval * 0.2)
        return random.uniform(0, window)

    def _first_delay(self) -> float:
        normal = self._normal_first_delay()
        if self.estimate is None or self.schedule_key is None:
            return normal
        plan = self.estimate.first_read(self.schedule_key, self.poll_interval)
        key, elapsed = self.schedule_key, self.elapsed()
        if plan.at_age is not None and plan.at_age - elapsed > normal:
            self._skipped = True
            self.log.info(
                "Generation %s: first read at +%.0fs (learned from %d completions of %s)",
                self.generation_id,
                plan.at_age,
                plan.learned_from,
                key,
            )
            return plan.at_age - elapsed
        if plan.phase > 0:
            self.log.info(
                "Generation %s: first read at +%.0fs, a random phase that keeps the estimate current "
                "(learned from %d completions of %s)",
                self.generation_id,
                elapsed + normal + plan.phase,
                plan.learned_from,
                key,
            )
            return normal + plan.phase
        self.log.info("Generation %s: fixed schedule (no estimate yet for %s)", self.generation_id, key)
        return normal

    def _backoff_interval(self) -> float:
        # BaseSensorOperator._get_next_poke_interval after `polls` pokes: [b, 2b) with
        # b = max(poke_interval * 2 ** (polls - 2), 1), at most max_wait.
        base = max(self.poll_interval * 2.0 ** min(self.polls - 2, 64), MIN_BACKOFF)
        delay = random.uniform(base, 2 * base)
        return min(delay, self.max_wait) if self.max_wait else delay

    # -- verdict --------------------------------------------------------------------------------------

    def check(
        self, get_result: Callable[..., GenerationResult], *, deadline: float | None = None
    ) -> GenerationResult | None:
        """One read, judged: the completed result, or ``None`` to keep waiting.

        :param get_result: Reads one result (e.g. ``VidgenHook.get_result``).
        :param deadline: Passed on as ``deadline=`` to a ``get_result`` that takes one (a
            ``time.monotonic()`` value for ``VidgenHook``), so the read's retries stay inside the wait.
        :raises VidgenError: what :meth:`on_result` / :meth:`on_error` raise.
        """
        try:
            if deadline is not None and _takes_deadline(get_result):
                result = get_result(self.generation_id, deadline=deadline)
            else:
                result = get_result(self.generation_id)
        except VidgenError as err:
            self.on_error(err)
            return None
        return self.on_result(result)

    def monotonic_deadline(self) -> float:
        """The deadline as a ``time.monotonic()`` value (what ``VidgenHook.get_result`` reads)."""
        return time.monotonic() + self.remaining()

    def on_result(self, result: GenerationResult) -> GenerationResult | None:
        """Read one successful poll; return the result when ``completed``, ``None`` to keep waiting.

        :param result: What the result endpoint answered.
        :raises VidgenGenerationFailedError: the generation ended ``failed``.
        """
        self._count_read()
        if result.created is not None:
            self.created = float(result.created)
        self._note_status(result.status)
        metrics.poll_result(self, result)
        if result.is_completed and not result.video_url:
            # "completed" without a URL breaks the documented contract: do not report success;
            # treat it like a transient failure (the next poll may carry the URL).
            self._judge_error(
                VidgenTransientError(f"Generation {self.generation_id} is completed but has no video_url")
            )
            return None
        self.consecutive_failures = 0
        if result.is_completed:
            self._observe_completion()
            return result
        if result.is_failed:
            raise VidgenGenerationFailedError(self.generation_id, result.error)
        self._last_in_progress = self.elapsed()
        return None

    def on_error(self, error: Exception) -> None:
        """Read one failed poll: re-raise what waiting cannot fix, or count it and keep waiting.

        :param error: The exception the poll raised.
        :raises VidgenTransientError: the budget of consecutive failures is spent.
        """
        self._count_read()
        self._judge_error(error)

    def timeout_error(
        self, error_class: type[VidgenWaitTimeoutError] = VidgenWaitTimeoutError
    ) -> VidgenWaitTimeoutError:
        """The error to raise when the wait is past its timeout.

        :param error_class: The class to raise (the sensor's is also an ``AirflowSensorTimeout``).
        """
        return error_class(self.generation_id, self.timeout, self.last_status)

    def _count_read(self) -> None:
        self.polls += 1
        self._reads_here += 1

    def _judge_error(self, error: Exception) -> None:
        metrics.read_error(error)
        if ends_wait(error) or not isinstance(error, VidgenError):
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

    def _observe_completion(self) -> None:
        # A wait taken over from another process did not see the reads before: nothing to learn.
        if self.estimate is not None and self.schedule_key is not None and not self._taken_over:
            self.estimate.observe(self.schedule_key, self._last_in_progress, self.elapsed(), skipped=self._skipped)

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
        parameters = inspect.signature(get_result).parameters
    except (TypeError, ValueError):
        return False
    return "deadline" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


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
    schedule_key: str | None = None,
    backoff_when_late: bool = False,
    estimate: Estimate | None = None,
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
    :param schedule_key: The generation's kind (adaptive polling; ``None``: the fixed schedule).
    :param backoff_when_late: See :class:`GenerationWait`.
    :param estimate: Where the schedule is learned (default: this process's
        :data:`~airflow_provider_vidgen.completion_times.ESTIMATE`, with a ``schedule_key``).
    :raises VidgenGenerationFailedError: the generation failed.
    :raises VidgenWaitTimeoutError: not finished within ``timeout``.
    """
    wait = GenerationWait(
        generation_id,
        poll_interval=poll_interval,
        timeout=timeout,
        max_consecutive_failures=max_consecutive_failures,
        log=log,
        clock=clock,
        schedule_key=schedule_key,
        backoff_when_late=backoff_when_late,
        estimate=estimate if estimate is not None or schedule_key is None else _process_estimate(),
    )
    while True:
        delay = wait.next_delay()
        if delay > 0:
            sleep(delay)
        # The deadline is on `clock`, the clock VidgenHook reads deadlines on (time.monotonic).
        done = wait.check(get_result, deadline=wait.end_time)
        if done is not None:
            return done
        if wait.remaining() <= 0:
            raise wait.timeout_error()


def _process_estimate() -> Estimate:
    from airflow_provider_vidgen.completion_times import ESTIMATE

    return ESTIMATE


def pushes_only_its_return_value(task: Any) -> bool:
    """Whether a worker ending ``task`` pushes its result as a plain ``return_value`` that nothing maps
    over: with ``do_xcom_push`` and without ``multiple_outputs`` (one XCom per key), and no mapped task
    expanding over it (a worker's push also records the length to map over). Only then can the trigger
    end the task with the same XComs."""
    if not getattr(task, "do_xcom_push", True) or getattr(task, "multiple_outputs", False):
        return False
    try:
        return next(task.iter_mapped_dependants(), None) is None
    except Exception:  # not in a DAG: nothing expands over it
        return True


class _Deferring(Protocol):
    def defer(self, *, trigger: Any, method_name: str) -> NoReturn: ...


def check_then_defer(
    task: _Deferring,
    wait: GenerationWait,
    get_result: Callable[..., GenerationResult],
    *,
    vidgen_conn_id: str,
    method_name: str = "execute_complete",
    success_xcoms: str | None = None,
    check: bool = True,
) -> GenerationResult:
    """Check once on the worker: return the result if already completed, else defer ``task`` to a
    :class:`~airflow_provider_vidgen.triggers.vidgen.VideoGenerationTrigger` that continues ``wait``.

    The check is part of the wait: its read's retries (and any Retry-After) stay inside the wait's
    timeout, and the trigger gets what is left of it, with what the check saw (status, failed polls).

    :param task: The operator or sensor that defers.
    :param wait: The task's wait (on the wall clock: its state goes to the trigger).
    :param get_result: Reads one result (``VidgenHook.get_result``).
    :param vidgen_conn_id: The connection the trigger reads with.
    :param method_name: The task's method the trigger resumes.
    :param success_xcoms: What the task pushes on success (``sensor`` or ``create``), so that a
        completed wait ends the task in the triggerer where Airflow supports it; ``None``: it resumes.
    :param check: Read once before deferring. ``False`` for a generation this task has just created:
        it cannot be finished yet, and the trigger reads it within its first-check window anyway.
    :raises VidgenError: the check found the generation ``failed``, or an error that ends a wait.
    """
    if check:
        done = wait.check(get_result, deadline=wait.monotonic_deadline())
        if done is not None:
            return done
    from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger

    trigger = VideoGenerationTrigger.continuing(wait, vidgen_conn_id=vidgen_conn_id, success_xcoms=success_xcoms)
    task.defer(trigger=trigger, method_name=method_name)
    raise AssertionError("defer() always raises")  # pragma: no cover
