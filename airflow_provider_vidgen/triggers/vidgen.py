"""``VideoGenerationTrigger``: wait for a generation in the triggerer, holding no worker slot.

The triggerer imports this module on its event loop, so it imports nothing heavy: the HTTP client
(aiohttp), the models (pydantic) and the rest of the wait are loaded in a worker thread when the
first trigger runs (see :func:`_load_runtime`), never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_provider_vidgen.connection import ConnectionSettings
    from airflow_provider_vidgen.exceptions import VidgenError
    from airflow_provider_vidgen.models import GenerationResult
    from airflow_provider_vidgen.waiting import WaitTracker

#: The same default as ``airflow_provider_vidgen.waiting.DEFAULT_MAX_CONSECUTIVE_FAILURES`` (not
#: imported from there: importing it would load the models on the triggerer's event loop).
DEFAULT_MAX_CONSECUTIVE_FAILURES = 10

#: Modules a running trigger needs; imported off the event loop by :func:`_load_runtime`.
_RUNTIME_MODULES = (
    "airflow.providers.common.compat.sdk",
    "airflow_provider_vidgen.async_client",
    "airflow_provider_vidgen.events",
    "airflow_provider_vidgen.protocol",
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


#: Polls are spread by +/- this fraction of the interval, so mapped tasks do not poll in lock-step.
JITTER = 0.1
#: The first check comes within this many seconds of the start (at most 20% of the interval).
FIRST_CHECK_WITHIN = 2.0
#: Wake-ups are rounded up to this grid (seconds): triggers due within the same tick wake together,
#: so the event loop handles their polls in one pass instead of one pass each.
TICK = 0.1


def _until_next_tick(delay: float, now: float) -> float:
    """``delay``, lengthened by less than :data:`TICK` to end on the tick grid."""
    wake = now + delay
    return delay + (-wake) % TICK


#: What a trigger that ends its task on success pushes as XCom (see :func:`ends_in_triggerer`):
#: ``sensor``, the sensor's ``return_value`` (the result); ``create``, a create operator's XComs.
SUCCESS_XCOMS = ("sensor", "create")
#: A task started in the triggerer ends its own wait this many seconds before Airflow's trigger
#: timeout (``StartTriggerArgs.timeout`` = the wait's timeout + this), so it ends with the wait's own
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
    """Poll the result endpoint until the generation is terminal or ``end_time`` passes.

    Yields exactly one event (see :mod:`airflow_provider_vidgen.events`): ``completed`` (with the
    result), ``failed`` (with the API's error), ``timeout`` or ``error``.

    :param generation_id: The generation to wait on.
    :param vidgen_conn_id: Airflow connection of type ``vidgen`` (resolved once per run; triggers on
        one event loop share a lookup for :data:`CONNECTION_TTL` seconds).
    :param poll_interval: Seconds between polls (jittered by +/-10%).
    :param end_time: Absolute deadline, unix seconds; a restarted trigger keeps it. ``None``: the trigger
        was started by the scheduler (``start_from_trigger``): the deadline is Airflow's trigger timeout
        of the task less :data:`TRIGGER_TIMEOUT_GRACE`, else ``timeout`` from the start.
    :param max_consecutive_failures: Transient poll failures tolerated in a row (with backoff);
        ``None``: no limit (the sensor's ``silent_fail``), only ``end_time`` ends an outage.
    :param started_at: Unix time the wait began (for elapsed times in the log across restarts).
    :param last_status: The status the task saw before deferring (so it is not logged twice).
    :param consecutive_failures: Failed polls in a row before deferring (the budget is shared).
    :param timeout: Seconds the wait may last, for a trigger started without ``end_time``.
    :param success_xcoms: ``None``: every outcome resumes the task on a worker. One of
        :data:`SUCCESS_XCOMS`: ``completed`` ends the task here (``TaskSuccessEvent``) with the XComs the
        task would have pushed (where :func:`ends_in_triggerer`); other outcomes resume it.
    """

    def __init__(
        self,
        generation_id: str,
        vidgen_conn_id: str,
        poll_interval: float,
        end_time: float | None,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        started_at: float | None = None,
        last_status: str | None = None,
        consecutive_failures: int = 0,
        timeout: float | None = None,
        success_xcoms: str | None = None,
    ) -> None:
        super().__init__()
        if end_time is None and timeout is None:
            raise ValueError("VideoGenerationTrigger needs end_time or timeout")
        if success_xcoms is not None and success_xcoms not in SUCCESS_XCOMS:
            raise ValueError(f"success_xcoms must be None or one of {SUCCESS_XCOMS}, got {success_xcoms!r}")
        # generation_id and vidgen_conn_id may still be templates here (started in the triggerer: Airflow
        # renders them after __init__, before run()); they are checked in run().
        self.generation_id = generation_id
        self.vidgen_conn_id = vidgen_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time) if end_time is not None else None
        self.timeout = float(timeout) if timeout is not None else None
        self.success_xcoms = success_xcoms
        self._completed: GenerationResult | None = None
        self.max_consecutive_failures = None if max_consecutive_failures is None else int(max_consecutive_failures)
        self.started_at = float(started_at) if started_at is not None else time.time()
        self.last_status = last_status
        self.consecutive_failures = int(consecutive_failures)

    @classmethod
    def continuing(
        cls,
        tracker: WaitTracker,
        *,
        vidgen_conn_id: str,
        poll_interval: float,
        timeout: float,
        success_xcoms: str | None = None,
    ) -> VideoGenerationTrigger:
        """The trigger that takes over a wait a task has just checked (deadline: ``timeout`` from now).

        :param tracker: The task's wait so far (last status seen, failed polls in a row).
        :param vidgen_conn_id: Airflow connection of type ``vidgen``.
        :param poll_interval: Seconds between polls.
        :param timeout: Seconds from now until the wait ends with a ``timeout`` event.
        :param success_xcoms: End the task here on success, with these XComs (see the class).
        """
        now = time.time()
        return cls(
            generation_id=tracker.generation_id,
            vidgen_conn_id=vidgen_conn_id,
            poll_interval=poll_interval,
            end_time=now + timeout,
            max_consecutive_failures=tracker.max_consecutive_failures,
            started_at=now,
            last_status=tracker.last_status,
            consecutive_failures=tracker.consecutive_failures,
            success_xcoms=success_xcoms,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive arguments (no secrets: the key is looked up from the connection)."""
        return (
            "airflow_provider_vidgen.triggers.vidgen.VideoGenerationTrigger",
            {
                "generation_id": self.generation_id,
                "vidgen_conn_id": self.vidgen_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_consecutive_failures": self.max_consecutive_failures,
                "started_at": self.started_at,
                "last_status": self.last_status,
                "consecutive_failures": self.consecutive_failures,
                "timeout": self.timeout,
                "success_xcoms": self.success_xcoms,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until terminal; yield one event."""
        try:
            await _load_runtime()
            self._start()
            event = await self._wait()
        except Exception as err:  # never die without an event; the task reports it
            event = {
                "status": "error",
                "generation_id": str(self.generation_id),
                "result": None,
                "message": str(err),
                "last_status": self.last_status,
                "error_class": type(err).__name__,
            }
        if event["status"] == "completed" and self._completed is not None and self._ends_task():
            try:
                yield await self._success_event(self._completed)
                return
            except Exception as err:  # the XComs could not be pushed: the task resumes and pushes them
                self.log.warning("Generation %s: resuming the task on a worker (%s)", self.generation_id, err)
        yield TriggerEvent(event)

    def _start(self) -> None:
        """Check what Airflow may have rendered since ``__init__``; fix the deadline of a trigger that the
        scheduler started (no ``end_time``): Airflow's trigger timeout of the task, kept across restarts."""
        from airflow_provider_vidgen.exceptions import VidgenValidationError

        if not isinstance(self.generation_id, str) or not self.generation_id.strip():
            raise VidgenValidationError(
                f"VideoGenerationSensor: generation_id must be a non-blank string (the id a create operator "
                f"returned), got {type(self.generation_id).__name__} {self.generation_id!r}"
            )
        self.generation_id = self.generation_id.strip()
        if self.end_time is not None:
            return
        assert self.timeout is not None
        timeout_after = getattr(self, "timeout_after", None)  # set by the triggerer from the task instance
        if timeout_after is not None:
            self.end_time = timeout_after.timestamp() - TRIGGER_TIMEOUT_GRACE
            self.started_at = min(self.started_at, self.end_time - self.timeout)
        else:
            self.end_time = self.started_at + self.timeout

    def _ends_task(self) -> bool:
        return self.success_xcoms is not None and ends_in_triggerer()

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
        for key, value in success_xcoms(str(self.success_xcoms), result).items():
            await XCom.aset(key, value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
        self.log.info(
            "Generation %s completed: %s s of video at %s (the task ends here)",
            result.id,
            result.actual_duration,
            protocol.url_for_log(str(result.video_url)),
        )
        return TaskSuccessEvent()

    def _restarted(self) -> bool:
        # A trigger normally starts right after its task deferred: one that starts more than a poll
        # interval later was restarted (a new triggerer took it over), maybe with thousands of others.
        return time.time() - self.started_at > self.poll_interval

    async def _wait(self) -> dict[str, Any]:
        from airflow_provider_vidgen import protocol
        from airflow_provider_vidgen.async_client import ResultReader, shared_session
        from airflow_provider_vidgen.events import make_event
        from airflow_provider_vidgen.exceptions import VidgenError, VidgenGenerationFailedError, VidgenTransientError
        from airflow_provider_vidgen.waiting import WaitTracker

        assert self.end_time is not None  # fixed by _start()
        end_time = self.end_time
        restarted = self._restarted()
        tracker = WaitTracker(
            self.generation_id,
            max_consecutive_failures=self.max_consecutive_failures,
            log=self.log,
            started_at=self.started_at,
            clock=time.time,
            # An earlier triggerer may have logged a transition from last_status already: do not log it again.
            resumed=restarted,
        )
        tracker.last_status = self.last_status
        tracker.consecutive_failures = self.consecutive_failures
        try:
            settings = await resolve_settings(self.vidgen_conn_id)
        except VidgenError as err:
            return make_event("error", self.generation_id, error=err)
        reader = ResultReader(settings, self.generation_id)
        delay = self._first_delay(restarted)
        attempt = 0  # failed reads within the current poll: retried like the hook retries them
        async with shared_session() as session:
            while True:
                remaining = end_time - time.time()
                if remaining <= 0:
                    return make_event(
                        "timeout",
                        self.generation_id,
                        message=str(tracker.timeout_error(end_time - self.started_at)),
                        last_status=tracker.last_status,
                    )
                await asyncio.sleep(min(_until_next_tick(delay, time.time()), remaining))
                try:
                    result = await reader.read(session, end_time)
                except VidgenError as err:
                    if isinstance(err, VidgenTransientError) and attempt < settings.max_retries:
                        # The same policy as VidgenHook.get_result: backoff (and Retry-After) within the poll.
                        attempt += 1
                        delay = self._backoff(attempt, err, settings)
                        continue
                    if isinstance(err, VidgenTransientError):
                        err = protocol.gave_up(err, attempt + 1)
                    attempt = 0
                    try:
                        tracker.on_error(err)  # one failed poll, as in the synchronous wait
                    except VidgenError as fatal:
                        return make_event("error", self.generation_id, error=fatal, last_status=tracker.last_status)
                    delay = self._next_poll()
                    continue
                attempt = 0
                try:
                    done = tracker.on_result(result)
                except VidgenGenerationFailedError as failed:
                    return make_event("failed", self.generation_id, result=result, error=failed)
                except VidgenError as fatal:  # e.g. the failure budget spent on "completed without URL"
                    return make_event("error", self.generation_id, error=fatal, last_status=tracker.last_status)
                if done is not None:
                    self._completed = done
                    return make_event("completed", self.generation_id, result=done)
                delay = self._next_poll()

    def _first_delay(self, restarted: bool | None = None) -> float:
        # A restarted trigger (with thousands of others, maybe) spreads its first check over a whole
        # interval instead of the first seconds.
        if restarted is None:
            restarted = self._restarted()
        window = self.poll_interval if restarted else min(FIRST_CHECK_WITHIN, self.poll_interval * 0.2)
        return random.uniform(0, window)

    def _next_poll(self) -> float:
        return self.poll_interval * random.uniform(1 - JITTER, 1 + JITTER)

    @staticmethod
    def _backoff(attempt: int, err: VidgenError, settings: ConnectionSettings) -> float:
        from airflow_provider_vidgen import protocol
        from airflow_provider_vidgen.exceptions import VidgenTransientError

        retry_after = err.retry_after if isinstance(err, VidgenTransientError) else None
        return protocol.backoff_delay(attempt, settings.retry_base_delay, settings.retry_max_delay, retry_after)


__all__ = ["VideoGenerationTrigger"]
