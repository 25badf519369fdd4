"""Pay once: what a later try of a create task does with the generation an earlier try created.

Airflow >= 3.3 keeps a ``task_state_store`` per dag run, task and map index, shared by every try
of that task instance (XCom is cleared between tries, so it cannot remember). Right after a create,
the operators write the generation id and a fingerprint of the request there. A later try reads it
back and :func:`decide` chooses, before anything is billed:

- ``reconnect`` - the stored generation is ``queued``/``processing``: wait on it, create nothing;
- ``reuse`` - it is ``completed``: finish at once, create nothing;
- ``create`` - nothing stored, the stored one ``failed`` or is unknown to the API, or the request
  changed (another prompt, say) since it was created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_vidgen.exceptions import VidgenError, VidgenNotFoundError, VidgenTransientError
from airflow_provider_vidgen.models import GenerationResult, StarVideosRequest, VideosRequest

#: The task_state_store key. Renaming it would make in-flight retries forget their generation.
STATE_KEY = "vidgen_generation"


def request_fingerprint(request: VideosRequest | StarVideosRequest) -> str:
    """SHA-256 of the API family and the validated JSON body: equal requests, equal fingerprints."""
    family = "videos" if isinstance(request, VideosRequest) else "starvideos"
    canonical = json.dumps({"family": family, "body": request.to_wire()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_record(generation_id: str, fingerprint: str) -> dict[str, str]:
    """What is written to the task_state_store right after a create."""
    return {"generation_id": generation_id, "fingerprint": fingerprint}


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


def decide(stored: Any, fingerprint: str, get_result: Callable[[str], GenerationResult]) -> Decision:
    """Choose between reconnecting to, reusing or replacing the generation an earlier try created.

    :param stored: What the task_state_store holds under :data:`STATE_KEY` (``None`` if nothing).
    :param fingerprint: The fingerprint of this try's request.
    :param get_result: Reads a generation's result (``VidgenHook.get_result``).
    :raises VidgenTransientError: the stored generation could not be checked; creating anyway could
        bill twice, so the task fails (and Airflow may retry) instead.
    """
    if not isinstance(stored, dict) or not stored.get("generation_id"):
        return Decision("create", "create: no generation stored for this task instance yet")
    generation_id = str(stored["generation_id"])
    if stored.get("fingerprint") != fingerprint:
        return Decision(
            "create",
            f"resubmit: the request changed since generation {generation_id} was created "
            f"(fingerprint {str(stored.get('fingerprint'))[:12]} -> {fingerprint[:12]})",
        )
    try:
        result = get_result(generation_id)
    except VidgenNotFoundError as err:
        if err.json_body:  # the API's own answer, not a proxy's or a gateway's
            return Decision("create", f"resubmit: stored generation {generation_id} is unknown to the API")
        raise _unchecked(generation_id, err) from err
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
