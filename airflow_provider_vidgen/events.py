"""The trigger's terminal event, and how a resumed task reads it.

The event is a small JSON-safe dict::

    {"status": "completed" | "failed" | "timeout" | "error",
     "generation_id": "...", "result": {...} | None, "message": "..." | None,
     "last_status": "..." | None, "error_class": "..." | None}

``status`` comes from a strict allow-list. The ``result`` never holds the ``video_url``: Airflow logs
every event it fires ("Trigger fired event ..."), and a signed video URL must not reach any log. A
task resuming on a ``completed`` event reads a fresh result instead (which also carries a URL that
lives longer). :func:`result_from_event` turns an event back into exactly what the synchronous wait
returns or raises, so deferrable, poke and reschedule modes give the same results, XComs and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_vidgen import exceptions
from airflow_provider_vidgen.exceptions import (
    VidgenError,
    VidgenGenerationFailedError,
    VidgenWaitTimeoutError,
)
from airflow_provider_vidgen.models import GenerationResult

EVENT_STATUSES = frozenset({"completed", "failed", "timeout", "error"})
#: The payload a task resumes with after a trigger ended it with ``TaskSuccessEvent`` where Airflow
#: resumes it anyway (``airflow dags test`` drops the event's XComs): read as ``completed``.
TASK_SUCCESS_PAYLOAD = "success"

#: Errors an ``error`` event may re-raise in the task, by name (anything else: VidgenError); derived
#: from the one definition of what ends a wait (``exceptions.WAIT_ENDING_ERRORS``).
_REPLAYABLE = exceptions.wait_errors()


def make_event(
    status: str,
    generation_id: str,
    *,
    result: GenerationResult | None = None,
    message: str | None = None,
    last_status: str | None = None,
    error: BaseException | None = None,
) -> dict[str, Any]:
    """Build a terminal event payload (primitives only)."""
    if status not in EVENT_STATUSES:
        raise ValueError(f"event status must be one of {sorted(EVENT_STATUSES)}, got {status!r}")
    return {
        "status": status,
        "generation_id": generation_id,
        "result": _without_url(result) if result is not None else None,
        "message": message if message is not None else (str(error) if error is not None else None),
        "last_status": last_status,
        "error_class": type(error).__name__ if error is not None else None,
    }


def success_xcoms(kind: str, result: GenerationResult) -> dict[str, Any]:
    """The XComs a task that waited for ``result`` pushes itself on success, for a trigger that ends
    the task: ``sensor``, the result as ``return_value``; ``create``, the id as ``return_value`` and the
    ``video_url`` and ``actual_duration``, then the id as ``return_value``, in that order, as a worker
    pushes them (``generation_id`` was pushed before the task deferred).

    :param kind: ``sensor`` or ``create``.
    :param result: The completed result (with its ``video_url``).
    """
    if kind == "sensor":
        return {"return_value": result.to_xcom()}
    if kind == "create":
        # In a worker's order: a push that fails half-way leaves no return_value without the others.
        return {"video_url": result.video_url, "actual_duration": result.actual_duration, "return_value": result.id}
    raise ValueError(f"success XComs of {kind!r}: must be 'sensor' or 'create'")


def _without_url(result: GenerationResult) -> dict[str, Any]:
    """The result as XCom holds it, minus the (signed, temporary) ``video_url``."""
    payload = result.to_xcom()
    del payload["video_url"]
    return payload


def result_from_event(
    event: Any,
    generation_id: str,
    timeout: float,
    read_result: Callable[[str], GenerationResult],
    timeout_error: type[VidgenWaitTimeoutError] = VidgenWaitTimeoutError,
) -> GenerationResult:
    """The completed result an event reports, or the error the synchronous wait would have raised.

    :param event: What the trigger sent (validated strictly: a dict, a known status, the right id), or
        :data:`TASK_SUCCESS_PAYLOAD` (the trigger ended the task, which Airflow resumed anyway).
    :param generation_id: The id this task waits on.
    :param timeout: The wait's timeout in seconds (for the timeout message).
    :param read_result: Reads a fresh result (e.g. ``VidgenHook.get_result``): on ``completed`` the
        event carries no URL, so the result returned is read again, on the worker.
    :param timeout_error: The class raised on ``timeout``.
    """
    ended_task = event == TASK_SUCCESS_PAYLOAD  # no result in it: the completion is read again below
    if ended_task:
        event = {"status": "completed", "generation_id": generation_id, "result": None}
    elif not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise VidgenError(f"Unexpected trigger event for generation {generation_id}: {str(event)[:300]}")
    if event.get("generation_id") != generation_id:
        raise VidgenError(
            f"Trigger event is for generation {event.get('generation_id')!r}, but this task waits on {generation_id!r}"
        )
    status = event["status"]
    reported_result = event.get("result")
    if reported_result is not None and not isinstance(reported_result, dict):
        raise VidgenError(f"Trigger event for generation {generation_id} has a malformed result: {str(event)[:300]}")
    if status == "completed":
        if not ended_task:
            _check_reported_completion(event, generation_id)
        result = read_result(generation_id)
        if not result.is_completed or not result.video_url or result.id != generation_id:
            raise VidgenError(
                f"Trigger reported completion of {generation_id}, but reading its result again gave status "
                f"{result.status!r}{'' if result.video_url else ' and no video_url'}"
            )
        return result
    if status == "failed":
        api_error = (reported_result or {}).get("error")
        raise VidgenGenerationFailedError(generation_id, api_error)
    if status == "timeout":
        raise timeout_error(generation_id, timeout, event.get("last_status"))
    error_class = _REPLAYABLE.get(str(event.get("error_class")), VidgenError)
    raise error_class(str(event.get("message") or "the trigger ended with an error"))


def _check_reported_completion(event: dict[str, Any], generation_id: str) -> None:
    try:
        reported = GenerationResult.model_validate(event.get("result") or {})
    except ValueError:  # pydantic's ValidationError: the same error as any other malformed event
        raise VidgenError(
            f"Trigger reported completion of {generation_id} without a completed result: {str(event)[:300]}"
        ) from None
    if not reported.is_completed or reported.id != generation_id:
        raise VidgenError(f"Trigger reported completion of {generation_id} without a completed result: {event}")
