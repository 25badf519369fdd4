"""Metrics of the provider, sent through Airflow's ``Stats`` (StatsD or OpenTelemetry, as ``[metrics]`` configures).

Every metric name starts with ``vidgen.``; the deployment's prefix (``[metrics] statsd_prefix``, default
``airflow``) comes before it. Names carry the family and model as name segments (plain StatsD has no
tags) and the same values as tags (for StatsD with tags, Datadog and OpenTelemetry). A metric never
fails a task: an error of the metrics backend is logged and dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_vidgen.families import CreateRequest
    from airflow_provider_vidgen.models import GenerationResult
    from airflow_provider_vidgen.waiting import GenerationWait

log = logging.getLogger(__name__)

PREFIX = "vidgen"
#: Counter: a create the API accepted (an id came back), ``vidgen.create.<family>.<model>``.
CREATE = f"{PREFIX}.create"
#: Counter: a create that may or may not have created (billed) a generation,
#: ``vidgen.create_unknown_outcome.<family>.<model>``.
CREATE_UNKNOWN_OUTCOME = f"{PREFIX}.create_unknown_outcome"
#: Counter: a create the API refused or that provably created nothing, ``vidgen.create_error.<family>.<error class>``.
CREATE_ERROR = f"{PREFIX}.create_error"
#: Counter: a wait saw the generation ``completed``, ``vidgen.generation.completed.<family>.<model>``.
COMPLETED = f"{PREFIX}.generation.completed"
#: Counter: a wait saw the generation ``failed`` (or the create answered it failed at once).
FAILED = f"{PREFIX}.generation.failed"
#: Timer: from the last poll that saw the generation in progress to the poll that saw it finished.
DETECTION_LAG = f"{PREFIX}.generation.detection_lag"
#: Timer: from the generation's ``created`` time (the API's clock) to the poll that saw it finished.
GENERATION_TIME = f"{PREFIX}.generation.total_time"
#: Counter: a status read that failed (after its own retries), ``vidgen.api.read_error.<error class>``.
READ_ERROR = f"{PREFIX}.api.read_error"
#: Counter: bytes of video saved to object storage, ``vidgen.saved.bytes.<family>.<model>``.
SAVED_BYTES = f"{PREFIX}.saved.bytes"
#: Counter: videos saved to object storage, ``vidgen.saved.videos.<family>.<model>``.
SAVED_VIDEOS = f"{PREFIX}.saved.videos"

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
#: The poll time of the last in-progress status a wait saw (an attribute of the GenerationWait).
_LAST_IN_PROGRESS = "_vidgen_last_in_progress_at"


def _segment(value: Any) -> str:
    """``value`` as one segment of a metric name (no dots, only the characters every backend takes)."""
    text = _UNSAFE.sub("_", str(value)) if value not in (None, "") else "unknown"
    return text[:64]


def _family_label(model: str | None) -> str:
    """The key of the API family a model belongs to (``unknown`` when no family has the model)."""
    from airflow_provider_vidgen.families import family_of_model

    family = family_of_model(model)
    return family.key if family is not None else "unknown"


def _stats() -> Any:
    from airflow.providers.common.compat.sdk import Stats

    return Stats


def incr(name: str, count: int = 1, **tags: Any) -> None:
    """Increment ``name.<tag values...>`` by ``count``, tagged with ``tags``; never raises."""
    try:
        full = ".".join([name, *(_segment(value) for value in tags.values())])
        _stats().incr(full, count, tags={key: _segment(value) for key, value in tags.items()})
    except Exception as err:  # a metric never fails a task
        log.debug("metric %s not sent: %s", name, err)


def timing(name: str, seconds: float, **tags: Any) -> None:
    """Record ``seconds`` for the timer ``name.<tag values...>``, tagged with ``tags``; never raises."""
    try:
        from datetime import timedelta

        full = ".".join([name, *(_segment(value) for value in tags.values())])
        _stats().timing(full, timedelta(seconds=max(0.0, seconds)), tags={key: _segment(v) for key, v in tags.items()})
    except Exception as err:
        log.debug("metric %s not sent: %s", name, err)


@contextmanager
def counting_create(request: CreateRequest) -> Iterator[None]:
    """Count the outcome of the create sent inside the block: accepted, unknown outcome, or refused."""
    from airflow_provider_vidgen.exceptions import VidgenCreateOutcomeUnknownError, VidgenGenerationFailedError
    from airflow_provider_vidgen.families import family_of

    family = family_of(request).key
    try:
        yield
    except VidgenGenerationFailedError:  # created (billed) and failed at once
        incr(CREATE, family=family, model=request.model)
        incr(FAILED, family=family, model=request.model)
        raise
    except VidgenCreateOutcomeUnknownError:
        incr(CREATE_UNKNOWN_OUTCOME, family=family, model=request.model)
        raise
    except Exception as err:
        incr(CREATE_ERROR, family=family, error=type(err).__name__)
        raise
    incr(CREATE, family=family, model=request.model)


def poll_result(tracker: GenerationWait, result: GenerationResult) -> None:
    """One successful status read of a wait: a finished generation counts, with its timers."""
    try:
        _poll_result(tracker, result)
    except Exception as err:  # a metric never fails a wait
        log.debug("wait metrics not sent: %s", err)


def _poll_result(tracker: GenerationWait, result: GenerationResult) -> None:
    now = tracker.clock()
    if not (result.is_failed or (result.is_completed and result.video_url)):
        if not result.is_completed:
            setattr(tracker, _LAST_IN_PROGRESS, now)
        return
    family, model = _family_label(result.model), result.model
    incr(COMPLETED if result.is_completed else FAILED, family=family, model=model)
    last_in_progress = getattr(tracker, _LAST_IN_PROGRESS, None)
    if last_in_progress is not None:  # unknown when the first read of this wait found it finished
        timing(DETECTION_LAG, now - last_in_progress, family=family, model=model)
    if result.created is not None:
        timing(GENERATION_TIME, tracker.elapsed(), family=family, model=model)


def read_error(error: BaseException) -> None:
    """One failed status read of a wait, counted by the error's class."""
    incr(READ_ERROR, error=type(error).__name__)


def saved(manifest: dict[str, Any]) -> None:
    """A video written to object storage: its bytes and one video."""
    model = manifest.get("model")
    family = _family_label(model)
    incr(SAVED_VIDEOS, family=family, model=model)
    incr(SAVED_BYTES, int(manifest.get("bytes") or 0), family=family, model=model)
