"""``VideoGenerationTrigger``: wait for a generation in the triggerer, holding no worker slot.

The triggerer imports this module on its event loop, so it imports nothing heavy: the HTTP client
(aiohttp), the models (pydantic) and the rest of the wait are loaded in a worker thread when the
first trigger runs (see :func:`_load_runtime`), never on the loop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_provider_vidgen.connection import ConnectionSettings
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
#: so the event loop handles their polls in one pass instead of one pass each.
TICK = 0.1


def _until_next_tick(delay: float, now: float) -> float:
    """``delay``, lengthened by less than :data:`TICK` to end on the tick grid."""
    wake = now + delay
    return delay + (-wake) % TICK


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

    :param vidgen_conn_id: Airflow connection of type ``vidgen`` (resolved once per run; triggers on
        one event loop share a lookup for :data:`CONNECTION_TTL` seconds).
    :param wait: The wait's state as ``GenerationWait.to_state`` gives it (primitives: generation id,
        poll interval, start and timeout, failure budget, last status, ...; never a secret). The
        kwargs of a trigger serialized by an earlier version (``end_time``, and ``started_at`` the
        time of the hand-over) load too.
    """

    def __init__(self, vidgen_conn_id: str, **wait: Any) -> None:
        super().__init__()
        self.vidgen_conn_id = vidgen_conn_id
        self.wait_state = wait

    @property
    def generation_id(self) -> str:
        """The generation waited on."""
        return str(self.wait_state["generation_id"])

    @property
    def end_time(self) -> float:
        """The wait's deadline, unix seconds (a restarted trigger keeps it)."""
        state = self.wait_state
        if "timeout" not in state:  # kwargs serialized by an earlier version: the deadline itself
            return float(state["end_time"])
        return float(state["started_at"]) + float(state["timeout"])

    @classmethod
    def continuing(cls, wait: GenerationWait, *, vidgen_conn_id: str) -> VideoGenerationTrigger:
        """The trigger that takes over a wait a task has just checked (its deadline unchanged).

        :param wait: The task's wait so far (last status seen, failed polls in a row, ...).
        :param vidgen_conn_id: Airflow connection of type ``vidgen``.
        """
        return cls(vidgen_conn_id=vidgen_conn_id, **wait.hand_over())

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive arguments: the connection id and the wait's state (no secrets:
        the key is looked up from the connection)."""
        return (
            "airflow_provider_vidgen.triggers.vidgen.VideoGenerationTrigger",
            {"vidgen_conn_id": self.vidgen_conn_id, **self.wait_state},
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
        yield TriggerEvent(event)

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
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    return make_event(
                        "timeout",
                        self.generation_id,
                        message=str(tracker.timeout_error()),
                        last_status=tracker.last_status,
                    )
                await asyncio.sleep(min(_until_next_tick(delay, time.time()), remaining))
                try:
                    result = await reader.read(session, self.end_time)
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
                    return make_event("completed", self.generation_id, result=done)
                delay = tracker.next_delay()


__all__ = ["VideoGenerationTrigger"]
