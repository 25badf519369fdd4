"""``VideoGenerationSensor``: wait until a generation is ``completed`` (or fail when it ``failed``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_vidgen.exceptions import VidgenError, VidgenSensorTimeoutError
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.links import VideoLink
from airflow_provider_vidgen.waiting import DEFAULT_MAX_CONSECUTIVE_FAILURES, WaitTracker

#: task_state_store key of a rescheduled sensor's wait (Airflow >= 3.3).
WAIT_STATE_KEY = "vidgen_wait"

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class VideoGenerationSensor(BaseSensorOperator):
    """Wait for a Videos or StarVideos generation to finish.

    ``completed``: the sensor succeeds; its XCom ``return_value`` is the JSON-safe dict
    ``id, status, model, created, video_url, actual_duration, error``. ``failed``: the task fails
    with the API's error. ``queued`` / ``processing`` (and undocumented statuses): keep waiting.
    Transient errors (connection, timeout, 429, 5xx) are logged and the wait goes on until
    ``max_consecutive_failures`` checks in a row have failed; a rejected key (401/403) fails at once.
    Past ``timeout`` the task fails (without retries) with a message naming the generation id.

    :param generation_id: The generation id, typically ``{{ ti.xcom_pull(task_ids='create') }}``.
        Templated.
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
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.generation_id = generation_id
        self.vidgen_conn_id = vidgen_conn_id
        self.max_consecutive_failures = max_consecutive_failures
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> VidgenHook:
        """The hook for ``vidgen_conn_id`` (created after templates are rendered)."""
        return VidgenHook(vidgen_conn_id=self.vidgen_conn_id)

    @cached_property
    def tracker(self) -> WaitTracker:
        """Status-change logging and the consecutive-failure budget of this wait."""
        return WaitTracker(
            str(self.generation_id),
            max_consecutive_failures=self.max_consecutive_failures,
            log=self.log,
            clock=time.time,
        )

    def _restore_wait(self, context: Context) -> Any:
        """In ``reschedule`` mode each poke is a new process: carry the wait's state over in the
        task_state_store (Airflow >= 3.3) so elapsed times, status changes and the failure budget
        continue. Returns the store, or ``None`` where there is none (the state then starts afresh)."""
        store = context.get("task_state_store") if self.mode == "reschedule" else None
        if store is None:
            return None
        saved: Any = store.get(WAIT_STATE_KEY)
        ti = context["ti"]
        if (
            isinstance(saved, dict)
            and saved.get("generation_id") == str(self.generation_id)
            and saved.get("try_number") == getattr(ti, "try_number", None)
        ):
            self.tracker.started_at = float(saved.get("started_at", self.tracker.started_at))
            self.tracker.last_status = str(saved["last_status"]) if saved.get("last_status") else None
            self.tracker.consecutive_failures = int(saved.get("failures", 0))
        return store

    def _save_wait(self, context: Context, store: Any) -> None:
        store.set(
            WAIT_STATE_KEY,
            {
                "generation_id": str(self.generation_id),
                "try_number": getattr(context["ti"], "try_number", None),
                "started_at": self.tracker.started_at,
                "last_status": self.tracker.last_status,
                "failures": self.tracker.consecutive_failures,
            },
        )

    def execute(self, context: Context) -> Any:
        try:
            if self.deferrable:
                return self._execute_deferrable(context)
            return super().execute(context)
        except AirflowSensorTimeout as err:
            if isinstance(err, VidgenError):
                raise
            raise self._timeout_error() from err
        finally:
            self.hook.close()

    def poke(self, context: Context) -> bool | PokeReturnValue:
        store = self._restore_wait(context)
        try:
            # The tracker's clock is wall-clock time (it carries over between reschedule pokes); the
            # hook's deadline is monotonic: the time left until the sensor's timeout, from now.
            left = self.tracker.started_at + float(self.timeout) - self.tracker.clock()
            result = self.hook.get_result(self.generation_id, deadline=time.monotonic() + left)
        except VidgenError as err:
            self.tracker.on_error(err)
            if store is not None:
                self._save_wait(context, store)
            return False
        done = self.tracker.on_result(result)
        if done is None:
            if store is not None:
                self._save_wait(context, store)
            return False
        return PokeReturnValue(is_done=True, xcom_value=done.to_xcom())

    def _execute_deferrable(self, context: Context) -> Any:
        # One check first: a generation that is already finished needs no trigger.
        done = self.poke(context)
        if isinstance(done, PokeReturnValue) and done.is_done:
            return done.xcom_value
        from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger

        trigger = VideoGenerationTrigger.continuing(
            self.tracker,
            vidgen_conn_id=self.vidgen_conn_id,
            poll_interval=float(self.poke_interval),
            timeout=float(self.timeout),
        )
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: the same XCom, errors and messages as a poking sensor."""
        from airflow_provider_vidgen.events import result_from_event

        try:
            result = result_from_event(event, str(self.generation_id), float(self.timeout), VidgenSensorTimeoutError)
        except VidgenSensorTimeoutError:
            if self.soft_fail:
                raise AirflowSkipException(
                    f"Generation {self.generation_id} did not finish in time (soft_fail)"
                ) from None
            raise
        self.log.info("Generation %s completed (reported by the trigger)", result.id)
        return result.to_xcom()

    def _timeout_error(self) -> VidgenSensorTimeoutError:
        return VidgenSensorTimeoutError(str(self.generation_id), float(self.timeout), self.tracker.last_status)


__all__ = ["VideoGenerationSensor"]
