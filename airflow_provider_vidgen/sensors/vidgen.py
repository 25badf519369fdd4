"""``VideoGenerationSensor``: wait until a generation is ``completed`` (or fail when it ``failed``)."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_vidgen.exceptions import VidgenError, VidgenSensorTimeoutError, VidgenValidationError
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.links import VideoLink
from airflow_provider_vidgen.waiting import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    GenerationWait,
    check_then_defer,
    observed,
    pushes_only_its_return_value,
)

#: task_state_store key of a rescheduled sensor's wait (Airflow >= 3.3): ``GenerationWait.to_state()``
#: and the ``try_number`` it belongs to.
WAIT_STATE_KEY = "vidgen_wait"

#: ``BaseSensorOperator.execute`` itself, without the executor safeguard Airflow wraps around every
#: ``execute``: called through the wrapper from this sensor's own (wrapped) ``execute``, Airflow 2
#: logs "VideoGenerationSensor.execute cannot be called outside TaskInstance!" on every run.
_BASE_EXECUTE = getattr(BaseSensorOperator.execute, "__wrapped__", BaseSensorOperator.execute)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def _is_templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return not isinstance(value, (type(None), bool, int, float, bytes, list, tuple, dict, set, timedelta))


#: ``xcom_pull(...)`` calls in a template, and whether one names ``map_indexes``.
_XCOM_PULL = re.compile(r"xcom_pull\s*\((?P<args>[^)]*)\)")
_MAP_INDEXES_ARG = re.compile(r"\bmap_indexes\s*=")


def _renders_in_triggerer(template: str) -> bool:
    """Whether the triggerer can render ``template``. ``ti.xcom_pull(...)`` without ``map_indexes``
    asks for every map index (a request Airflow 3.3's triggerer does not answer: the render would wait
    until the trigger times out); with ``map_indexes`` it asks for one XCom, which it answers."""
    if all(_MAP_INDEXES_ARG.search(call.group("args")) for call in _XCOM_PULL.finditer(template)):
        return True
    return _triggerer_answers("GetXComSequenceSlice")


@functools.cache
def _triggerer_answers(request: str) -> bool:
    """Whether this Airflow's triggerer answers a trigger's ``request`` (a task SDK message type)."""
    import typing

    try:
        from airflow.jobs.triggerer_job_runner import ToTriggerSupervisor  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return False
    union = typing.get_args(ToTriggerSupervisor)[0]
    return any(getattr(member, "__name__", "") == request for member in typing.get_args(union))


def normalise_generation_id(value: Any) -> str:
    """The generation id as every part of the wait uses it: a string without surrounding blanks.

    :raises VidgenValidationError: not a string, or blank.
    """
    if not isinstance(value, str):
        raise VidgenValidationError(
            f"VideoGenerationSensor: generation_id must be a string (the id a create operator returned), "
            f"got {type(value).__name__} {value!r}"
        )
    normalised = value.strip()
    if not normalised:
        raise VidgenValidationError(f"VideoGenerationSensor: generation_id must not be blank, got {value!r}")
    return normalised


def _check_options(
    generation_id: Any, vidgen_conn_id: Any, poke_interval: Any, max_consecutive_failures: Any, deferrable: Any
) -> None:
    """Every option is checked when the sensor is built, so a mistake is a DAG import error naming it."""
    problems = []
    if not _is_templated(generation_id):
        try:
            normalise_generation_id(generation_id)
        except VidgenValidationError as err:
            problems.append(str(err).removeprefix("VideoGenerationSensor: "))
    if not isinstance(vidgen_conn_id, str) or not vidgen_conn_id.strip():
        problems.append(f"vidgen_conn_id must be a non-empty string, got {vidgen_conn_id!r}")
    interval = poke_interval.total_seconds() if isinstance(poke_interval, timedelta) else poke_interval
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        problems.append(f"poke_interval must be a positive number of seconds, got {poke_interval!r}")
    if (
        isinstance(max_consecutive_failures, bool)
        or not isinstance(max_consecutive_failures, int)
        or max_consecutive_failures < 0
    ):
        problems.append(f"max_consecutive_failures must be a whole number >= 0, got {max_consecutive_failures!r}")
    if not isinstance(deferrable, bool):
        problems.append(f"deferrable must be True or False, got {deferrable!r}")
    if problems:
        raise VidgenValidationError("Invalid VideoGenerationSensor options: " + "; ".join(problems))


class VideoGenerationSensor(BaseSensorOperator):
    """Wait for a Videos or StarVideos generation to finish.

    ``completed``: the sensor succeeds; its XCom ``return_value`` is the JSON-safe dict
    ``id, status, model, created, video_url, actual_duration, error``. ``failed``: the task fails
    with the API's error. ``queued`` / ``processing`` (and undocumented statuses): keep waiting.
    Transient errors (connection, timeout, 429, 5xx) are logged and the wait goes on until
    ``max_consecutive_failures`` checks in a row have failed; a rejected key (401/403) fails at once.
    Past ``timeout`` the task fails (without retries) with a message naming the generation id.

    :param generation_id: The generation id, typically
        ``{{ ti.xcom_pull(task_ids='create', map_indexes=-1) }}`` (naming ``map_indexes`` lets a
        deferrable sensor start in the triggerer on Airflow >= 3.3). Templated.
    :param vidgen_conn_id: Airflow connection of type ``vidgen``. Templated.
    :param poke_interval: Seconds between status reads (API advice: 30-60).
    :param max_consecutive_failures: Failed checks tolerated in a row (each poke already retries
        its request). In ``reschedule`` mode the count is kept across pokes in the task_state_store
        (Airflow >= 3.3); before 3.3 it starts afresh at each poke.
    :param deferrable: Wait in the triggerer (no worker slot held). Default: Airflow's
        ``[operators] default_deferrable``.
    :param kwargs: Other ``BaseSensorOperator`` arguments (``mode``, ``timeout``, ...).
    """

    template_fields: Sequence[str] = ("generation_id", "vidgen_conn_id")
    ui_color = "#e1bee7"
    operator_extra_links = (VideoLink(),)
    # Set per sensor in __init__ (see _start_in_triggerer). Mapped sensors read these class values
    # (Airflow does not start a mapped task in the triggerer): they start on a worker.
    start_from_trigger = False
    start_trigger_args = None

    def __init__(
        self,
        *,
        generation_id: str,
        vidgen_conn_id: str = VidgenHook.default_conn_name,
        poke_interval: float = 30,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        _check_options(generation_id, vidgen_conn_id, poke_interval, max_consecutive_failures, deferrable)
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.generation_id = generation_id
        self.vidgen_conn_id = vidgen_conn_id
        self.max_consecutive_failures = max_consecutive_failures
        self.deferrable = deferrable
        self._start_in_triggerer()

    def _start_in_triggerer(self) -> None:
        """Where Airflow supports it (``VideoGenerationTrigger.starting``), a deferrable sensor starts in
        the triggerer, with its id (and connection id) rendered there, and a successful wait ends there:
        no worker process at all. Only where the triggerer can render the templates."""
        from airflow_provider_vidgen.triggers.vidgen import TRIGGER_TIMEOUT_GRACE, VideoGenerationTrigger

        if not self.deferrable or not pushes_only_its_return_value(self):
            return  # (a mapped task expanding over this one comes later: checked when it defers)
        if self.execution_timeout is not None and (
            self.execution_timeout.total_seconds() < float(self.timeout) + TRIGGER_TIMEOUT_GRACE
        ):
            # Airflow's trigger timeout would be execution_timeout (the shorter), which the wait cannot
            # tell from its own timeout + the grace: it would end too early, as a sensor timeout.
            return
        if not isinstance(self.generation_id, str) or not isinstance(self.vidgen_conn_id, str):
            return  # an XComArg is resolved on a worker only
        try:
            dag: Any = self.dag
        except Exception:  # not in a DAG (yet)
            dag = None
        if dag is not None and (
            dag.user_defined_macros or dag.user_defined_filters or getattr(dag, "render_template_as_native_obj", False)
        ):
            return  # the triggerer renders with Airflow's plain environment, without the DAG's macros
        if not (_renders_in_triggerer(self.generation_id) and _renders_in_triggerer(self.vidgen_conn_id)):
            return
        # The id is still a template here: the wait's options, with the id as Airflow will render it.
        args = VideoGenerationTrigger.starting(
            self._new_wait(self.generation_id), vidgen_conn_id=self.vidgen_conn_id, success_xcoms="sensor"
        )
        if args is not None:
            self.start_from_trigger = True
            self.start_trigger_args = args

    def _success_xcoms(self) -> str | None:
        """``sensor`` where the trigger pushes what a worker would on success (the ``return_value``),
        so the wait may end in the triggerer; ``None`` (it resumes on a worker) where a worker pushes
        otherwise (see :func:`~airflow_provider_vidgen.waiting.pushes_only_its_return_value`)."""
        return "sensor" if pushes_only_its_return_value(self) else None

    def _enter(self) -> str:
        """Normalise the (rendered) generation id once, where it enters; every later use reads it."""
        self.generation_id = normalise_generation_id(self.generation_id)
        return self.generation_id

    @cached_property
    def hook(self) -> VidgenHook:
        """The hook for ``vidgen_conn_id`` (created after templates are rendered)."""
        return VidgenHook(vidgen_conn_id=self.vidgen_conn_id)

    @cached_property
    def wait(self) -> GenerationWait:
        """This run's wait: status-change logging, the consecutive-failure budget (none with
        ``silent_fail``), the deadline and, in deferrable mode, the trigger's schedule
        (``poke_interval``, ``exponential_backoff``, ``max_wait``)."""
        return self._new_wait(self._enter())

    def _new_wait(self, generation_id: str) -> GenerationWait:
        """A wait on ``generation_id`` with this sensor's options, starting now."""
        max_wait = self.max_wait.total_seconds() if self.max_wait else None
        return GenerationWait(
            generation_id,
            poll_interval=float(self.poke_interval),
            timeout=float(self.timeout),
            max_consecutive_failures=None if self.silent_fail else self.max_consecutive_failures,
            exponential_backoff=bool(self.exponential_backoff),
            max_wait=max_wait,
            log=self.log,
            clock=time.time,
        )

    def _restore_wait(self, context: Context) -> Any:
        """In ``reschedule`` mode each poke is a new process: carry the wait's state over in the
        task_state_store (Airflow >= 3.3) so elapsed times, status changes and the failure budget
        continue. Returns the store, or ``None`` where there is none (the state then starts afresh)."""
        store = context.get("task_state_store") if self.mode == "reschedule" else None
        if store is None:
            if self.mode == "reschedule":
                # No state carried over: at least count the timeout from where Airflow counts it (the
                # first poke), so a late poke's retries do not sleep past the sensor's timeout.
                first_poke = self._first_poke_time(context)
                if first_poke is not None:
                    started_at = min(first_poke, self.wait.started_at)
                    self.wait = GenerationWait.from_state(
                        {**self.wait.to_state(), "started_at": started_at}, log=self.log
                    )
            return None
        saved: Any = store.get(WAIT_STATE_KEY)
        ti = context["ti"]
        if (
            isinstance(saved, dict)
            and saved.get("generation_id") == self.generation_id
            and saved.get("try_number") == getattr(ti, "try_number", None)
        ):
            # What this poke's options say (the DAG may have changed between pokes: Airflow applies
            # its new timeout too), then what the earlier pokes saw (a store entry of an earlier
            # version holds a part of it: started_at, last_status, failures).
            self.wait = GenerationWait.from_state({**self.wait.to_state(), **observed(saved)}, log=self.log)
        return store

    def _first_poke_time(self, context: Context) -> float | None:
        """Unix time of this try's first poke, as Airflow's reschedule loop reads it for its timeout."""
        ti: Any = context["ti"]
        try:
            get_first = getattr(ti, "get_first_reschedule_date", None)
            if get_first is not None:  # Airflow 3
                first = get_first(context)
            else:  # Airflow 2: the same query as BaseSensorOperator.execute
                from airflow.sensors.base import _orig_start_date  # type: ignore[attr-defined,unused-ignore]

                first = _orig_start_date(
                    dag_id=ti.dag_id,
                    task_id=ti.task_id,
                    run_id=ti.run_id,
                    map_index=ti.map_index,
                    try_number=(ti.max_tries or 0) - (self.retries or 0) + 1,
                )
        except Exception as err:  # no record to read: the wait counts from this poke
            self.log.debug("First poke time unknown (%s): the timeout counts from this poke", err)
            return None
        return first.timestamp() if first is not None else None

    def _save_wait(self, context: Context, store: Any) -> None:
        store.set(WAIT_STATE_KEY, {**self.wait.to_state(), "try_number": getattr(context["ti"], "try_number", None)})

    def execute(self, context: Context) -> Any:
        with self._ending():
            self._enter()
            if self.deferrable:
                return self._execute_deferrable(context)
            _ = self.wait  # built with the flags as set (silent_fail: no failure budget)
            with self._outcomes_decided_here():
                return _BASE_EXECUTE(self, context)

    @contextmanager
    def _ending(self) -> Iterator[None]:
        """Every way out of a run of the task (poke loop, deferral, resume) goes through :meth:`_end`;
        the hook's session is closed."""
        try:
            yield
        except Exception as err:
            ended = self._end(err)
            if ended is err:
                raise
            raise ended from err
        finally:
            self.hook.close()

    @contextmanager
    def _outcomes_decided_here(self) -> Iterator[None]:
        # BaseSensorOperator.execute applies soft_fail / never_fail / silent_fail to some exceptions
        # only (and resume_execution to others), so the same outcome ended differently per mode. The
        # sensor decides every outcome itself (_end, and the failure budget for silent_fail): Airflow's
        # loop runs with the flags off and only polls, reschedules and times out.
        flags = {name: getattr(self, name, False) for name in ("soft_fail", "never_fail", "silent_fail")}
        for name in flags:
            setattr(self, name, False)
        try:
            yield
        finally:
            for name, value in flags.items():
                setattr(self, name, value)

    def _end(self, err: Exception) -> Exception:
        """The one table of outcomes (README "Outcomes and soft_fail / never_fail / silent_fail").

        Without a flag (and with ``silent_fail``) the error is raised as it is (an Airflow sensor
        timeout becomes :class:`VidgenSensorTimeoutError`, naming the id). With ``soft_fail`` every
        way the wait can end other than ``completed`` skips the task; with ``never_fail`` also any
        other error does.
        """
        if isinstance(err, AirflowSkipException):
            return err
        if isinstance(err, AirflowSensorTimeout) and not isinstance(err, VidgenError):
            err = self._timeout_error()
        ours = isinstance(err, (VidgenError, AirflowSensorTimeout, AirflowTaskTimeout))
        flag = "soft_fail" if self.soft_fail else "never_fail" if self.never_fail else None
        if flag is None or not (ours or (self.never_fail and not isinstance(err, AirflowException))):
            return err
        return AirflowSkipException(f"Skipped ({flag}=True): {err}")

    def poke(self, context: Context) -> bool | PokeReturnValue:
        self._enter()
        store = self._restore_wait(context)
        # The wait's clock is wall-clock time (it carries over between reschedule pokes); the hook's
        # deadline is monotonic: the time left until the sensor's timeout, from now.
        done = self.wait.check(self.hook.get_result, deadline=self.wait.monotonic_deadline())
        if done is None:
            if store is not None:
                self._save_wait(context, store)
            return False
        return PokeReturnValue(is_done=True, xcom_value=done.to_xcom())

    def _execute_deferrable(self, context: Context) -> Any:
        # One check first: a generation that is already finished needs no trigger. The check is part
        # of the wait: the trigger gets what is left of the timeout, not all of it again. A successful
        # wait ends in the triggerer where Airflow supports it (the sensor's XCom pushed there).
        self._restore_wait(context)
        done = check_then_defer(
            self,
            self.wait,
            self.hook.get_result,
            vidgen_conn_id=self.vidgen_conn_id,
            success_xcoms=self._success_xcoms(),
        )
        return done.to_xcom()

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the trigger. ``execute_complete`` applies the outcome table itself (the same as
        the other modes), so Airflow's sensor rules, which would turn any error into a skip with
        ``soft_fail`` and replace the message, apply only to a trigger that failed in the triggerer."""
        if next_method == "execute_complete":
            return self.execute_complete(context, **(next_kwargs or {}))
        return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: the same XCom, errors and messages as a poking sensor."""
        from airflow_provider_vidgen.events import result_from_event

        with self._ending():
            generation_id = self._enter()
            # A completed event carries no video URL (Airflow logs the event): the result is read again here.
            result = result_from_event(
                event, generation_id, float(self.timeout), self.hook.get_result, VidgenSensorTimeoutError
            )
        self.log.info("Generation %s completed (reported by the trigger)", result.id)
        return result.to_xcom()

    def _timeout_error(self) -> VidgenSensorTimeoutError:
        return VidgenSensorTimeoutError(self.generation_id, float(self.timeout), self.wait.last_status)


__all__ = ["VideoGenerationSensor"]
