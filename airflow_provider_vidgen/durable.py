"""Pay once: what a later try of a create task does with the generation an earlier try created.

Airflow >= 3.3 keeps a ``task_state_store`` per dag run, task and map index, shared by every try
of that task instance (XCom is cleared between tries, so it cannot remember). The operators write
to it under :data:`STATE_KEY`:

- *before* sending a create, an "in flight" marker: the request fingerprint and the UTC time of the
  attempt (:func:`in_flight_record`), so a try that dies while the create is under way (execution
  timeout, killed worker) leaves a trace;
- right after the create answered, the generation id, the fingerprint and the UTC time of the create
  (:func:`stored_record`), with ``failed`` when the API answered the create itself with ``failed``
  (:func:`failed_record`);
- nothing, when the create provably created nothing (the marker is deleted).

A later try reads it back and :func:`decide` chooses, before anything is billed:

- ``reconnect`` - the stored generation is ``queued``/``processing``: wait on it, create nothing;
- ``reuse`` - it is ``completed``: finish at once, create nothing;
- ``create`` - nothing stored, the stored one ``failed``, the request changed (another prompt, say)
  since, or the stored id is proven unknown to the API (:func:`proves_task_not_found`, and older
  than :data:`UNKNOWN_ID_GRACE_PERIOD`);
- a marker without an id: the earlier create's outcome is unknown, so it fails with
  ``VidgenCreateOutcomeUnknownError`` unless ``retry_on_unknown_create_outcome`` lets it create.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from airflow_provider_vidgen.exceptions import (
    VidgenCreateOutcomeUnknownError,
    VidgenError,
    VidgenNotFoundError,
    VidgenTransientError,
)
from airflow_provider_vidgen.families import CreateRequest, family_of
from airflow_provider_vidgen.models import GenerationResult

#: The task_state_store key. Renaming it would make in-flight retries forget their generation.
STATE_KEY = "vidgen_generation"

#: A stored id younger than this is never replaced on a 404, however the 404 looks: right after a
#: create, a result endpoint may not know the id yet (replication lag), and paying again is the
#: costlier mistake.
UNKNOWN_ID_GRACE_PERIOD = timedelta(minutes=5)


def utc_now() -> datetime:
    """The current UTC time (a function, so tests can replace the clock)."""
    return datetime.now(timezone.utc)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def request_fingerprint(request: CreateRequest) -> str:
    """SHA-256 of the API family's key and the validated JSON body: equal requests, equal fingerprints.

    :raises VidgenUnknownFamilyError: ``request`` belongs to no API family.
    """
    family = family_of(request).key
    canonical = json.dumps({"family": family, "body": request.to_wire()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def in_flight_record(fingerprint: str, attempted_at: datetime | None = None) -> dict[str, Any]:
    """What is written to the task_state_store right *before* a create is sent."""
    return {"in_flight": True, "fingerprint": fingerprint, "attempted_at": _timestamp(attempted_at or utc_now())}


def stored_record(generation_id: str, fingerprint: str, created_at: datetime | None = None) -> dict[str, Any]:
    """What replaces the in-flight marker right after a create answered with an id."""
    return {
        "generation_id": generation_id,
        "fingerprint": fingerprint,
        "created_at": _timestamp(created_at or utc_now()),
    }


def failed_record(
    generation_id: str, fingerprint: str, error: str | None, created_at: datetime | None = None
) -> dict[str, Any]:
    """What replaces the in-flight marker when the API answered the create itself with ``failed``."""
    return {**stored_record(generation_id, fingerprint, created_at), "failed": True, "error": error}


@dataclass(frozen=True)
class Decision:
    """What to do instead of (or before) creating.

    :param action: ``create``, ``reconnect`` or ``reuse``.
    :param reason: One line for the log: the decision and why.
    :param generation_id: The stored generation, for ``reconnect`` and ``reuse``.
    :param result: Its result as just read, for ``reconnect`` and ``reuse``.
    """

    action: Literal["create", "reconnect", "reuse"]
    reason: str
    generation_id: str | None = None
    result: GenerationResult | None = None


def _unchecked(generation_id: str, err: VidgenError) -> VidgenTransientError:
    return VidgenTransientError(
        f"Could not check generation {generation_id}, created by an earlier try of this task; not "
        f"creating another one (that could bill twice). {err}",
        getattr(err, "http_status", None),
    )


def proves_task_not_found(err: VidgenNotFoundError, generation_id: str) -> bool:
    """Whether a 404 is the API's own "task not found" answer for ``generation_id``.

    The API answers an unknown id with HTTP 404 and its JSON envelope naming the task, e.g.
    ``{"code": "404", "msg": "task proj_1 not found", "data": null}``. A 404 without JSON (a proxy),
    with JSON that does not name this id as not found (a missing route during a deploy, a gateway's
    JSON error page) proves nothing.
    """
    if not err.json_body or not err.api_message:
        return False
    body = err.api_message.lower()
    names_it = re.search(rf"(?<![\w-]){re.escape(generation_id.lower())}(?![\w-])", body) is not None
    return names_it and "not found" in body


def _unknown_outcome(stored: dict[str, Any]) -> VidgenCreateOutcomeUnknownError:
    attempted = stored.get("attempted_at") or "an unrecorded time"
    return VidgenCreateOutcomeUnknownError(
        f"An earlier try of this task sent a create at {attempted} (UTC) and ended before its answer was "
        "recorded (an execution timeout, a killed worker or an unknown create outcome): the outcome of that "
        "create is unknown, and a generation may exist and be billed. Not creating another one, and failing "
        f"without retries: check the provider's dashboard or billing for a task created at {attempted}. "
        "Set retry_on_unknown_create_outcome=True to let a try create anyway (it may bill twice)."
    )


def decide(
    stored: Any,
    fingerprint: str,
    get_result: Callable[[str], GenerationResult],
    *,
    retry_on_unknown_create_outcome: bool = False,
    now: datetime | None = None,
) -> Decision:
    """Choose between reconnecting to, reusing or replacing the generation an earlier try created.

    :param stored: What the task_state_store holds under :data:`STATE_KEY` (``None`` if nothing).
    :param fingerprint: The fingerprint of this try's request.
    :param get_result: Reads a generation's result (``VidgenHook.get_result``).
    :param retry_on_unknown_create_outcome: Create although an earlier try's create has an unknown outcome.
    :param now: The current UTC time (default: the clock).
    :raises VidgenCreateOutcomeUnknownError: an earlier try sent a create and left no id (and
        ``retry_on_unknown_create_outcome`` is off).
    :raises VidgenTransientError: the stored generation could not be checked, or a 404 does not prove
        it unknown; creating anyway could bill twice, so the task fails (and Airflow may retry) instead.
    """
    if not isinstance(stored, dict) or not (stored.get("generation_id") or stored.get("in_flight")):
        return Decision("create", "create: no generation stored for this task instance yet")
    generation_id = str(stored.get("generation_id") or "").strip()
    if stored.get("fingerprint") != fingerprint:
        what = f"generation {generation_id} was created" if generation_id else "the earlier create was sent"
        return Decision(
            "create",
            f"resubmit: the request changed since {what} "
            f"(fingerprint {str(stored.get('fingerprint'))[:12]} -> {fingerprint[:12]})",
        )
    if not generation_id:
        if not retry_on_unknown_create_outcome:
            raise _unknown_outcome(stored)
        return Decision(
            "create",
            f"create: the create sent at {stored.get('attempted_at')} by an earlier try has an unknown outcome; "
            "creating again (retry_on_unknown_create_outcome=True): this may bill a second generation",
        )
    if stored.get("failed"):
        return Decision(
            "create",
            f"resubmit: stored generation {generation_id} failed at creation: {stored.get('error') or 'no reason'}",
        )
    try:
        result = get_result(generation_id)
    except VidgenNotFoundError as err:
        if not proves_task_not_found(err, generation_id):
            raise _unchecked(generation_id, err) from err
        created_at = _parse_timestamp(stored.get("created_at"))
        age = (now or utc_now()) - created_at if created_at is not None else None
        if age is None or age < UNKNOWN_ID_GRACE_PERIOD:
            since = f"{age.total_seconds():.0f}s ago" if age is not None else "at an unrecorded time"
            raise VidgenTransientError(
                f"Generation {generation_id}, created by an earlier try of this task {since}, is not found by the "
                f"API, but it is younger than the {UNKNOWN_ID_GRACE_PERIOD.total_seconds() / 60:g} minute grace "
                "period (the API may not know a new id yet): not creating another one (that could bill twice). "
                f"A later try checks again. {err}",
                err.http_status,
            ) from err
        return Decision("create", f"resubmit: stored generation {generation_id} is unknown to the API")
    except VidgenError as err:
        if isinstance(err, VidgenTransientError):
            raise _unchecked(generation_id, err) from err
        raise
    if result.is_failed:
        return Decision("create", f"resubmit: stored generation {generation_id} failed: {result.error or 'no reason'}")
    if result.is_completed and result.video_url:
        return Decision("reuse", f"reuse: generation {generation_id} already completed", generation_id, result)
    return Decision(
        "reconnect", f"reconnect: generation {generation_id} is {result.status}; waiting on it", generation_id, result
    )
