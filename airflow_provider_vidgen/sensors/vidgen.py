"""``VideoGenerationSensor``: wait until a generation is ``completed`` (or fail when it ``failed``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_vidgen.exceptions import VidgenError
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.waiting import DEFAULT_MAX_CONSECUTIVE_FAILURES, WaitTracker

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class VideoGenerationSensor(BaseSensorOperator):
    """Wait for a Videos or StarVideos generation to finish.

    ``completed``: the sensor succeeds; its XCom ``return_value`` is the JSON-safe dict
    ``id, status, model, created, video_url, actual_duration, error``. ``failed``: the task fails
    with the API's error. ``queued`` / ``processing`` (and undocumented statuses): keep waiting.
    Transient errors (connection, timeout, 429, 5xx) are logged and the wait goes on until
    ``max_consecutive_failures`` pokes in a row have failed; a rejected key (401/403) fails at once.

    :param generation_id: The generation id, typically ``{{ ti.xcom_pull(task_ids='create') }}``.
        Templated.
    :param vidgen_conn_id: Airflow connection of type ``vidgen``. Templated.
    :param poke_interval: Seconds between status reads (API advice: 30-60).
    :param max_consecutive_failures: Failed pokes tolerated in a row (each poke already retries
        its request). In ``reschedule`` mode the count starts afresh at each poke.
    :param kwargs: Other ``BaseSensorOperator`` arguments (``mode``, ``timeout``, ...).
    """

    template_fields: Sequence[str] = ("generation_id", "vidgen_conn_id")
    ui_color = "#e1bee7"

    def __init__(
        self,
        *,
        generation_id: str,
        vidgen_conn_id: str = VidgenHook.default_conn_name,
        poke_interval: float = 30,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.generation_id = generation_id
        self.vidgen_conn_id = vidgen_conn_id
        self.max_consecutive_failures = max_consecutive_failures

    @cached_property
    def hook(self) -> VidgenHook:
        """The hook for ``vidgen_conn_id`` (created after templates are rendered)."""
        return VidgenHook(vidgen_conn_id=self.vidgen_conn_id)

    @cached_property
    def tracker(self) -> WaitTracker:
        """Status-change logging and the consecutive-failure budget of this wait."""
        return WaitTracker(
            str(self.generation_id), max_consecutive_failures=self.max_consecutive_failures, log=self.log
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        try:
            result = self.hook.get_result(self.generation_id)
        except VidgenError as err:
            self.tracker.on_error(err)
            return False
        done = self.tracker.on_result(result)
        if done is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=done.to_xcom())


__all__ = ["VideoGenerationSensor"]
