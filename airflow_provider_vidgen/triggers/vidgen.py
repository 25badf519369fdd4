"""``VideoGenerationTrigger``: wait for a generation in the triggerer, holding no worker slot.

The triggerer imports this module on its event loop, so it imports nothing heavy: the HTTP client
(aiohttp), the models (pydantic) and the rest of the wait are loaded in a worker thread when the
first trigger runs (see :func:`_load_runtime`), never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow.triggers.base import StartTriggerArgs

    from airflow_provider_vidgen.connection import ConnectionSettings
    from airflow_provider_vidgen.models import GenerationResult
    from airflow_provider_vidgen.waiting import GenerationWait

#: Modules a running trigger needs; imported off the event loop by :func:`_load_runtime`.
_RUNTIME_MODULES = (
    "airflow.providers.common.compat.sdk",
    "airflow_provider_vidgen.async_client",
    "airflow_provider_vidgen.completion_times",
    "airflow_provider_vidgen.events",
    "airflow_provider_vidgen.protocol",
    "airflow_provider_vidgen.retry_policy",
    "airflow_provider_vidgen.waiting",
)
_runtime_loaded = False
_runtime_loading: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[None]] = (
    weakref.WeakKeyDictionary()
)


def _import_runtime() -> None:
    import importlib

    for name in _RUNTIME_MODULES:
        importlib.import_module(name)
    # The connection lookup's own first-use imports (BaseHook resolves lazily; asgiref on Airflow 2).
    from airflow.providers.common.compat.sdk import BaseHook

    importlib.import_module(BaseHook.__module__)
    importlib.import_module("asgiref.sync")
    try:  # Airflow 3: the async lookup loads its cache and the secrets backends synchronously the first time
        importlib.import_module("airflow.sdk.execution_time.cache")
        from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded
    except ImportError:  # Airflow 2: the lookup runs in a worker thread anyway
        return
    ensure_secrets_backend_loaded()


async def _load_runtime() -> None:
    """Import what a running trigger needs in a worker thread (once per process), so a cold start of
    many triggers does not hold the event loop for the import of aiohttp, pydantic models and SSL setup.
    Triggers starting together share one import."""
    global _runtime_loaded
    if _runtime_loaded:
        return
    loop = asyncio.get_running_loop()
    loading = _runtime_loading.get(loop)
    if loading is None:
        loading = _runtime_loading[loop] = loop.run_in_executor(None, _import_runtime)
    try:
        await asyncio.shield(loading)
    finally:
        if loading.done():
            _runtime_loading.pop(loop, None)
    _runtime_loaded = True


#: Wake-ups are rounded up to this grid (seconds): triggers due within the same tick wake together,
#: on one timer, so the event loop handles their polls in one pass instead of one pass (and one
#: timer) each.
TICK = 0.1


class _Ticks:
    """The timers of one event loop's triggers: one per tick of the :data:`TICK` grid that some
    trigger is due at, however many triggers are due at it."""

    def __init__(self) -> None:  # no reference to the loop: it keys a weak dictionary of these
        self.due: dict[int, list[asyncio.Future[None]]] = {}

    def wait_for(self, loop: asyncio.AbstractEventLoop, tick: int) -> asyncio.Future[None]:
        """A future done at tick ``tick`` (``tick * TICK`` on ``loop``'s clock); cancelling it
        cancels nothing else."""
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self.due.get(tick)
        if waiters is None:
            waiters = self.due[tick] = []
            loop.call_at(tick * TICK, self._fire, tick)
        waiters.append(waiter)
        return waiter

    def _fire(self, tick: int) -> None:
        for waiter in self.due.pop(tick, ()):
            if not waiter.done():  # a cancelled sleep is done already
                waiter.set_result(None)


_ticks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticks] = weakref.WeakKeyDictionary()


async def _sleep_on_tick(delay: float, remaining: float) -> None:
    """Sleep ``delay`` seconds, lengthened by less than :data:`TICK` to end on the tick grid, but
    never longer than ``remaining`` (the time left before the deadline)."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    tick = math.ceil((now + delay) / TICK)
    if tick * TICK - now > remaining:  # the deadline comes first: wake at it, off the grid
        await asyncio.sleep(remaining)
        return
    ticks = _ticks.get(loop)
    if ticks is None:
        ticks = _ticks[loop] = _Ticks()
    await ticks.wait_for(loop, tick)


#: What a trigger that ends its task on success pushes as XCom (see :func:`ends_in_triggerer`):
#: ``sensor``, the sensor's ``return_value`` (the result); ``create``, a create operator's XComs.
SUCCESS_XCOMS = ("sensor", "create")
#: A wait started in the triggerer ends itself this many seconds before Airflow's trigger timeout
#: (``StartTriggerArgs.timeout`` = the wait's timeout + this), so it ends with the wait's own
#: ``timeout`` event and message, not with Airflow's cancellation.
TRIGGER_TIMEOUT_GRACE = 60.0


@functools.cache
def ends_in_triggerer() -> bool:
    """Whether a successful wait ends its task in the triggerer and a deferrable sensor starts there
    with its templates rendered there: Airflow >= 3.3, whose triggers can push XComs the way a worker
    does (``XCom.aset``, through the configured XCom backend). Elsewhere every wait resumes on a worker.

    The XComs are pushed by the trigger, not given to ``TaskSuccessEvent(xcoms=...)``: Airflow 3.3 writes
    those with the database model's own JSON encoding, so a task on a worker would pull them back as
    JSON text (``'"proj_1"'``), and a custom XCom backend would be bypassed."""
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

    if not AIRFLOW_V_3_3_PLUS:
        return False
    from airflow.sdk.execution_time.xcom import XCom

    return callable(getattr(XCom, "aset", None))


def _success_xcoms_here(success_xcoms: str | None) -> str | None:
    """``success_xcoms`` where a wait can end in the triggerer (:func:`ends_in_triggerer`), else ``None``."""
    if success_xcoms is not None and success_xcoms not in SUCCESS_XCOMS:
        raise ValueError(f"success_xcoms must be None or one of {SUCCESS_XCOMS}, got {success_xcoms!r}")
    return success_xcoms if ends_in_triggerer() else None


#: Seconds a resolved connection is shared by the triggers of one event loop.
CONNECTION_TTL = 30.0

_settings_cache: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[ConnectionSettings]]]
] = weakref.WeakKeyDictionary()


async def _aget_connection(conn_id: str) -> Any:
    from airflow.providers.common.compat.sdk import BaseHook

    aget = getattr(BaseHook, "aget_connection", None)
    if aget is not None:  # Airflow 3: async lookup through the task SDK
        return await aget(conn_id)
    from asgiref.sync import sync_to_async  # Airflow 2: the lookup is synchronous; keep it off the loop

    return await sync_to_async(BaseHook.get_connection)(conn_id)


async def _lookup_settings(conn_id: str) -> ConnectionSettings:
    from airflow_provider_vidgen.connection import ConnectionSettings

    connection = await _aget_connection(conn_id)
    # Reading the extras (JSON) and checking the URL is plain CPU work: off the loop too.
    return await asyncio.to_thread(ConnectionSettings.from_connection, connection)


async def resolve_settings(conn_id: str) -> ConnectionSettings:
    """The connection's settings, looked up once and shared by this loop's triggers for a short while.

    Thousands of triggers started together (a mapped task, a restarted triggerer) cost one lookup;
    a failed lookup is not cached; after :data:`CONNECTION_TTL` seconds a key change is picked up.
    """
    loop = asyncio.get_running_loop()
    cache = _settings_cache.setdefault(loop, {})
    now = time.monotonic()
    entry = cache.get(conn_id)
    stale = entry is None or now - entry[0] > CONNECTION_TTL
    if not stale and entry is not None and entry[1].done() and entry[1].exception() is not None:
        stale = True
    if stale:
        entry = (now, asyncio.ensure_future(_lookup_settings(conn_id)))
        cache[conn_id] = entry
    assert entry is not None
    return await asyncio.shield(entry[1])


class VideoGenerationTrigger(BaseTrigger):
    """Poll the result endpoint until the generation is terminal or the wait's deadline passes.

    Yields exactly one event (see :mod:`airflow_provider_vidgen.events`): ``completed`` (with the
    result), ``failed`` (with the API's error), ``timeout`` or ``error``. The schedule, the failure
    budget and the verdict are the wait's (:class:`~airflow_provider_vidgen.waiting.GenerationWait`),
    built from the kwargs when the trigger runs (never when the triggerer imports this module).

    A trigger with ``success_xcoms`` ends its task here on ``completed`` (``TaskSuccessEvent``), after
    pushing the XComs the task would have pushed; every other outcome resumes the task on a worker.

    :param vidgen_conn_id: Airflow connection of type ``vidgen`` (resolved once per run; triggers on
        one event loop share a lookup for :data:`CONNECTION_TTL` seconds).
    :param success_xcoms: ``None``: every outcome resumes the task. One of :data:`SUCCESS_XCOMS`: what
        the task pushes on success (set only where :func:`ends_in_triggerer`).
    :param wait: The wait's state as ``GenerationWait.to_state`` gives it (primitives: generation id,
        poll interval, start and timeout, failure budget, last status, ...; never a secret). The
        kwargs of a trigger serialized by an earlier version (``end_time``, and ``started_at`` the
        time of the hand-over) load too. ``started_at`` ``None``: the scheduler started this trigger
        (:meth:`starting`); the wait begins when it runs (see :meth:`_begin`).
    """

    def __init__(self, vidgen_conn_id: str, success_xcoms: str | None = None, **wait: Any) -> None:
        super().__init__()
        # Started in the triggerer, generation_id and vidgen_conn_id are still templates here (Airflow
        # renders them after __init__, before run()): they are checked in run().
        self.vidgen_conn_id = vidgen_conn_id
        self.success_xcoms = success_xcoms
        self.wait_state = wait
        self._completed: GenerationResult | None = None

    @property
    def generation_id(self) -> str:
        """The generation waited on (Airflow sets it when it renders a trigger started in the triggerer)."""
        return str(self.wait_state["generation_id"])

    @generation_id.setter
    def generation_id(self, value: str) -> None:
        self.wait_state["generation_id"] = value

    @property
    def end_time(self) -> float:
        """The wait's deadline, unix seconds (a restarted trigger keeps it)."""
        state = self.wait_state
        if "timeout" not in state:  # kwargs serialized by an earlier version: the deadline itself
            return float(state["end_time"])
        return float(state["started_at"]) + float(state["timeout"])

    @classmethod
    def continuing(
        cls, wait: GenerationWait, *, vidgen_conn_id: str, success_xcoms: str | None = None
    ) -> VideoGenerationTrigger:
        """The trigger that takes over a wait a task has just checked (its deadline unchanged).

        :param wait: The task's wait so far (last status seen, failed polls in a row, ...).
        :param vidgen_conn_id: Airflow connection of type ``vidgen``.
        :param success_xcoms: What the task pushes on success, to end it here (see the class); kept only
            where :func:`ends_in_triggerer`.
        """
        return cls(vidgen_conn_id=vidgen_conn_id, success_xcoms=_success_xcoms_here(success_xcoms), **wait.hand_over())

    @classmethod
    def starting(cls, wait: GenerationWait, *, vidgen_conn_id: str, success_xcoms: str) -> StartTriggerArgs | None:
        """How the scheduler starts a task's wait in the triggerer (``start_from_trigger``), or ``None``
        where Airflow does not support it (:func:`ends_in_triggerer`).

        The kwargs are static (serialized with the DAG): the wait's options, without a start
        (``started_at`` ``None``). Airflow's trigger timeout is the wait's ``timeout`` plus
        :data:`TRIGGER_TIMEOUT_GRACE`; the wait's deadline is that timeout less the grace (:meth:`_begin`).

        :param wait: The wait with the task's options (its id may be a template the triggerer renders).
        :param vidgen_conn_id: Airflow connection of type ``vidgen`` (may be a template too).
        :param success_xcoms: What the task pushes on success (one of :data:`SUCCESS_XCOMS`).
        """
        if _success_xcoms_here(success_xcoms) is None:
            return None
        from airflow.triggers.base import StartTriggerArgs

        classpath, kwargs = cls(
            vidgen_conn_id=vidgen_conn_id,
            success_xcoms=success_xcoms,
            **{**wait.to_state(), "started_at": None, "deferred_at": None},
        ).serialize()
        return StartTriggerArgs(
            trigger_cls=classpath,
            trigger_kwargs=kwargs,
            next_method="execute_complete",
            next_kwargs=None,
            timeout=timedelta(seconds=wait.timeout + TRIGGER_TIMEOUT_GRACE),
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive arguments: the connection id and the wait's state (no secrets:
        the key is looked up from the connection)."""
        return (
            "airflow_provider_vidgen.triggers.vidgen.VideoGenerationTrigger",
            {"vidgen_conn_id": self.vidgen_conn_id, "success_xcoms": self.success_xcoms, **self.wait_state},
        )

    def load_wait(self) -> GenerationWait:
        """The wait these kwargs hold, in this process. It imports the wait (and the models): call it
        off the triggerer's import of this module, as :meth:`run` does after :func:`_load_runtime`."""
        from airflow_provider_vidgen.completion_times import ESTIMATE  # shared by this process's triggers
        from airflow_provider_vidgen.waiting import GenerationWait

        return GenerationWait.from_state(self.wait_state, log=self.log, spread=True, estimate=ESTIMATE)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until terminal; yield one event."""
        try:
            await _load_runtime()
            self._begin()
            event = await self._wait()
        except Exception as err:  # never die without an event; the task reports it
            event = {
                "status": "error",
                "generation_id": self.generation_id,
                "result": None,
                "message": str(err),
                "last_status": self.wait_state.get("last_status"),
                "error_class": type(err).__name__,
            }
        if event["status"] == "completed" and self._completed is not None and self.success_xcoms is not None:
            try:
                yield await self._success_event(self._completed)
                return
            except Exception as err:  # the XComs could not be pushed: the task resumes and pushes them
                # The class only: an XCom backend's or a validation error's text may quote the signed URL.
                self.log.warning(
                    "Generation %s: resuming the task on a worker (%s while ending it here)",
                    self.generation_id,
                    type(err).__name__,
                )
        yield TriggerEvent(event)

    def _begin(self) -> None:
        """Check what Airflow may have rendered since ``__init__``; give a wait the scheduler started
        (``started_at`` ``None``) its start: Airflow's trigger timeout of the task (from the task
        instance, so it survives a restart) less :data:`TRIGGER_TIMEOUT_GRACE` is its deadline; without
        one, now."""
        from airflow_provider_vidgen.exceptions import VidgenValidationError

        rendered = self.wait_state.get("generation_id")
        if not isinstance(rendered, str) or not rendered.strip():
            raise VidgenValidationError(
                f"VideoGenerationSensor: generation_id must be a non-blank string (the id a create operator "
                f"returned), got {type(rendered).__name__} {rendered!r}"
            )
        self.generation_id = rendered.strip()
        if self.wait_state.get("started_at") is not None:
            return
        timeout_after = getattr(self, "timeout_after", None)  # set by the triggerer from the task instance
        if timeout_after is not None:
            begun = timeout_after.timestamp() - TRIGGER_TIMEOUT_GRACE - float(self.wait_state["timeout"])
        else:
            begun = time.time()
        # Handed over when it began: a restarted triggerer resumes it (spread first check, no transition logged).
        self.wait_state.update(started_at=begun, deferred_at=begun)

    async def _success_event(self, result: GenerationResult) -> TriggerEvent:
        """Push the XComs the task would have pushed itself, then end it here (``TaskSuccessEvent``
        without XComs: Airflow logs the event, never a signed video URL)."""
        from airflow.sdk.execution_time.xcom import XCom
        from airflow.triggers.base import TaskSuccessEvent

        from airflow_provider_vidgen import protocol
        from airflow_provider_vidgen.events import success_xcoms

        ti: Any = self.task_instance
        if ti is None:
            raise RuntimeError("no task instance to push the XComs of")
        task = getattr(ti, "task", None)
        dependants = getattr(task, "iter_mapped_dependants", None)
        if dependants is not None and next(iter(dependants()), None) is not None:
            # A mapped task expands over this one's output: a worker's push also records the length to
            # map over, which XCom.aset does not. Before anything is pushed, so the worker pushes it all.
            raise RuntimeError("a mapped task expands over this task's output")
        for key, value in success_xcoms(str(self.success_xcoms), result).items():
            await XCom.aset(key, value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
        self.log.info(
            "Generation %s completed: %s s of video at %s (the task ends here)",
            result.id,
            result.actual_duration,
            protocol.url_for_log(str(result.video_url)),
        )
        return TaskSuccessEvent()

    async def _wait(self) -> dict[str, Any]:
        from airflow_provider_vidgen.async_client import ResultReader, shared_session
        from airflow_provider_vidgen.events import make_event
        from airflow_provider_vidgen.exceptions import VidgenError, VidgenGenerationFailedError
        from airflow_provider_vidgen.retry_policy import RetryPolicy

        # A trigger started more than a poll interval after its task deferred was restarted (a new
        # triggerer took it over): its wait is resumed (logs a status, spreads its first check).
        tracker = self.load_wait()
        try:
            settings = await resolve_settings(self.vidgen_conn_id)
        except VidgenError as err:
            return make_event("error", self.generation_id, error=err)
        reader = ResultReader(settings, self.generation_id)
        policy = RetryPolicy.from_settings(settings)  # the same policy as VidgenHook.get_result
        delay = tracker.next_delay()
        attempt = 0  # failed reads within the current poll: retried like the hook retries them
        async with shared_session() as session:
            while True:
                remaining = tracker.remaining()  # the wait runs on the wall clock here
                if remaining <= 0:
                    return make_event(
                        "timeout",
                        self.generation_id,
                        message=str(tracker.timeout_error()),
                        last_status=tracker.last_status,
                    )
                await _sleep_on_tick(delay, remaining)
                try:
                    result = await reader.read(session, tracker.end_time)
                except VidgenError as err:
                    attempt += 1
                    retry_in = policy.next_delay(attempt, err)  # backoff (and Retry-After) within the poll
                    if retry_in is not None:
                        delay = retry_in
                        continue
                    if policy.retryable(err):
                        err = policy.gave_up(err, attempt)
                    attempt = 0
                    try:
                        tracker.on_error(err)  # one failed poll, as in the synchronous wait
                    except VidgenError as fatal:
                        return make_event("error", self.generation_id, error=fatal, last_status=tracker.last_status)
                    delay = tracker.next_delay()
                    continue
                attempt = 0
                try:
                    done = tracker.on_result(result)
                except VidgenGenerationFailedError as failed:
                    return make_event("failed", self.generation_id, result=result, error=failed)
                except VidgenError as fatal:  # e.g. the failure budget spent on "completed without URL"
                    return make_event("error", self.generation_id, error=fatal, last_status=tracker.last_status)
                if done is not None:
                    self._completed = done  # with its URL, for the XComs of a task that ends here
                    return make_event("completed", self.generation_id, result=done)
                delay = tracker.next_delay()


__all__ = ["VideoGenerationTrigger"]
