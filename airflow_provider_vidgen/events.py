"""The trigger's terminal event, and how a resumed task reads it.

The event is a small JSON-safe dict::

    {"status": "completed" | "failed" | "timeout" | "error",
     "generation_id": "...", "result": {...} | None, "message": "..." | None,
     "last_status": "..." | None, "error_class": "..." | None}

``status`` comes from a strict allow-list. :func:`result_from_event` turns an event back into
exactly what the synchronous wait returns or raises, so deferrable, poke and reschedule modes give
the same results, XComs and errors.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_vidgen import exceptions
from airflow_provider_vidgen.exceptions import (
    VidgenError,
    VidgenGenerationFailedError,
    VidgenWaitTimeoutError,
)
from airflow_provider_vidgen.models import GenerationResult

EVENT_STATUSES = frozenset({"completed", "failed", "timeout", "error"})

#: Errors an ``error`` event may re-raise in the task, by name (anything else: VidgenError).
_REPLAYABLE = {
    cls.__name__: cls
    for cls in (
        exceptions.VidgenAuthError,
        exceptions.VidgenConfigError,
        exceptions.VidgenNotFoundError,
        exceptions.VidgenRequestRejectedError,
        exceptions.VidgenTransientError,
        exceptions.VidgenValidationError,
        exceptions.VidgenAPIError,
    )
}


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
        "result": result.to_xcom() if result is not None else None,
        "message": message if message is not None else (str(error) if error is not None else None),
        "last_status": last_status,
        "error_class": type(error).__name__ if error is not None else None,
    }


def result_from_event(
    event: Any, generation_id: str, timeout: float, timeout_error: type[VidgenWaitTimeoutError] = VidgenWaitTimeoutError
) -> GenerationResult:
    """The completed result an event reports, or the error the synchronous wait would have raised.

    :param event: What the trigger sent (validated strictly: a dict, a known status, the right id).
    :param generation_id: The id this task waits on.
    :param timeout: The wait's timeout in seconds (for the timeout message).
    :param timeout_error: The class raised on ``timeout``.
    """
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise VidgenError(f"Unexpected trigger event for generation {generation_id}: {str(event)[:300]}")
    if event.get("generation_id") != generation_id:
        raise VidgenError(
            f"Trigger event is for generation {event.get('generation_id')!r}, but this task waits on {generation_id!r}"
        )
    status = event["status"]
    if status == "completed":
        result = GenerationResult.model_validate(event.get("result") or {})
        if not result.is_completed or not result.video_url or result.id != generation_id:
            raise VidgenError(f"Trigger reported completion of {generation_id} without a completed result: {event}")
        return result
    if status == "failed":
        api_error = (event.get("result") or {}).get("error")
        raise VidgenGenerationFailedError(generation_id, api_error)
    if status == "timeout":
        raise timeout_error(generation_id, timeout, event.get("last_status"))
    error_class = _REPLAYABLE.get(str(event.get("error_class")), VidgenError)
    raise error_class(str(event.get("message") or "the trigger ended with an error"))
