"""Saving a finished video to object storage before its temporary URL expires.

Shared by ``VideoDownloadOperator`` and the create operators' ``output_path``. The video is streamed
in 1 MiB chunks (bounded memory) to a temporary object beside the destination, checked against
``Content-Length``, then moved into place: a failed or interrupted download never leaves a partial
object at the destination. The download uses a session of its own with no ``Authorization`` header,
so the API key never reaches the video host, even across redirects.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowFailException
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt

from airflow_provider_vidgen import protocol
from airflow_provider_vidgen.connection import USER_AGENT, ConnectionSettings
from airflow_provider_vidgen.exceptions import (
    VidgenError,
    VidgenGenerationFailedError,
    VidgenTransientError,
    VidgenValidationError,
)
from airflow_provider_vidgen.models import GenerationResult
from airflow_provider_vidgen.waiting import Log

if TYPE_CHECKING:
    # Object storage (fsspec, universal_pathlib) and requests are imported when a task saves, not on
    # every DAG parse.
    import requests
    from airflow.providers.common.compat.sdk import ObjectStoragePath

CHUNK_BYTES = 1 << 20
IF_EXISTS = ("overwrite", "skip", "fail")
IfExists = Literal["overwrite", "skip", "fail"]

#: Answers of the video host that mean "this URL is no longer good": ask the API for a fresh one.
EXPIRED_STATUSES = frozenset({401, 403, 404, 410})


class VidgenOutputExistsError(VidgenError, AirflowFailException):
    """The destination already exists and ``if_exists="fail"``. Never retried."""


class _Retry(VidgenTransientError):
    """A failed download attempt that another attempt may fix."""

    def __init__(self, message: str, refresh_url: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.refresh_url = refresh_url


def as_storage_path(destination: Any) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` from a URI string, a plain local path (``file://``) or a path object.

    :param destination: ``s3://bucket/key.mp4``, ``file:///data/a.mp4``, ``/data/a.mp4``, or an
        ``ObjectStoragePath``.
    """
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(destination, ObjectStoragePath):
        return destination
    text = str(destination or "").strip()
    if not text:
        raise VidgenValidationError("destination: must be a URI or a path (got an empty value)")
    if "://" not in text:
        text = "file://" + os.path.abspath(text)
    return ObjectStoragePath(text)


def check_if_exists(value: str, name: str = "if_exists") -> None:
    """Reject an unknown ``if_exists`` / ``if_output_exists`` value."""
    if value not in IF_EXISTS:
        raise VidgenValidationError(f"{name}: must be one of {', '.join(IF_EXISTS)} (got {value!r})")


def _size(path: ObjectStoragePath) -> int:
    stat = path.stat()
    size = getattr(stat, "st_size", None)
    return int(size if size is not None else stat["size"])


def existing_manifest(path: ObjectStoragePath, generation_id: str | None = None) -> dict[str, Any]:
    """The manifest of an object that is already there (read once, in chunks, for its SHA-256)."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return {
        "generation_id": generation_id,
        "uri": str(path),
        "bytes": _size(path),
        "sha256": digest.hexdigest(),
        "content_type": None,
        "actual_duration": None,
        "model": None,
        "skipped": True,
    }


def keep_existing(
    destination: ObjectStoragePath, if_exists: str, option: str, generation_id: str | None = None
) -> dict[str, Any] | None:
    """Apply ``if_exists`` to a destination that may already exist.

    :returns: the kept object's manifest for ``skip``; ``None`` when there is nothing there or it is
        to be overwritten.
    :raises VidgenOutputExistsError: it exists and ``if_exists`` is ``fail`` (nothing was done).
    """
    if not destination.exists():
        return None
    if if_exists == "fail":
        raise VidgenOutputExistsError(f"{destination} already exists ({option}='fail'); nothing was done")
    if if_exists == "skip":
        return existing_manifest(destination, generation_id)
    return None


class VideoSaver:
    """Downloads a generation's video into object storage.

    :param settings: The connection's settings (timeouts and retry policy; the key is not used here).
    :param log: Where attempts are logged.
    """

    def __init__(self, settings: ConnectionSettings, log: Log) -> None:
        self.settings = settings
        self.log = log

    def save(
        self, generation_id: str, get_result: Callable[[str], GenerationResult], destination: ObjectStoragePath
    ) -> dict[str, Any]:
        """Read the result now (never trust an old URL), download the video, move it into place.

        :param generation_id: The generation whose video to save.
        :param get_result: Reads the generation's result (``VidgenHook.get_result``).
        :param destination: Where the video goes (overwritten if present).
        :returns: The manifest: ``generation_id, uri, bytes, sha256, content_type, actual_duration, model``.
        """
        result = self._completed(generation_id, get_result)
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=lambda state: protocol.backoff_delay(
                state.attempt_number,
                self.settings.retry_base_delay,
                self.settings.retry_max_delay,
                getattr(state.outcome.exception() if state.outcome else None, "retry_after", None),
            ),
            retry=retry_if_exception_type(_Retry),
            before_sleep=lambda state: self.log.warning(
                "Download of generation %s failed (attempt %d): %s; retrying",
                generation_id,
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
        )
        refresh = False
        try:
            for attempt in retrying:
                with attempt:
                    if refresh:
                        result = self._completed(generation_id, get_result)  # ask the API for a fresh URL
                    try:
                        manifest = self._download(result, destination)
                    except _Retry as err:
                        refresh = err.refresh_url
                        raise
        except RetryError as err:
            last = err.last_attempt.exception()
            raise VidgenTransientError(
                f"Could not download the video of generation {generation_id} to {destination}: {last} "
                f"(gave up after {err.last_attempt.attempt_number} attempts; nothing was left at the destination)"
            ) from None
        self.log.info(
            "Saved generation %s to %s (%d bytes, sha256 %s)",
            generation_id,
            manifest["uri"],
            manifest["bytes"],
            manifest["sha256"],
        )
        return manifest

    @staticmethod
    def _completed(generation_id: str, get_result: Callable[[str], GenerationResult]) -> GenerationResult:
        result = get_result(generation_id)
        if result.is_failed:
            raise VidgenGenerationFailedError(generation_id, result.error)
        if not result.is_completed or not result.video_url:
            raise VidgenError(
                f"Generation {generation_id} is not completed (status: {result.status}); there is no video to "
                f"save yet. Wait for it first (VideoGenerationSensor, or wait_for_completion=True)."
            )
        return result

    def _download(self, result: GenerationResult, destination: ObjectStoragePath) -> dict[str, Any]:
        import requests

        url = str(result.video_url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise VidgenError(f"Generation {result.id}: video_url is not an http(s) URL; refusing to fetch it")
        where = protocol.url_for_log(url)
        temporary = destination.parent / f".{destination.name}.{uuid.uuid4().hex}.part"
        try:
            with requests.Session() as session:  # a session of its own: no API key, ever
                session.headers["User-Agent"] = USER_AGENT
                # The bytes as stored: Content-Length then counts what is written, and nothing is inflated.
                session.headers["Accept-Encoding"] = "identity"
                response = session.get(url, stream=True, timeout=(self.settings.connect_timeout, self.settings.timeout))
                with response:
                    if response.status_code in EXPIRED_STATUSES:
                        raise _Retry(f"GET {where}: HTTP {response.status_code} (expired URL?)", refresh_url=True)
                    if response.status_code in (408, 429) or response.status_code >= 500:
                        retry_after = protocol.parse_retry_after(response.headers.get("Retry-After"))
                        raise _Retry(f"GET {where}: HTTP {response.status_code}", retry_after=retry_after)
                    if response.status_code >= 400:
                        raise VidgenError(f"GET {where}: HTTP {response.status_code}")
                    expected = response.headers.get("Content-Length")
                    content_type = response.headers.get("Content-Type")
                    size, digest = self._stream_to(response, temporary)
            if expected is not None and expected.isdigit() and int(expected) != size:
                raise _Retry(f"GET {where}: got {size} of {expected} bytes")
            temporary.rename(destination)
        except (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL) as exc:
            self._discard(temporary)  # e.g. a redirect to a non-http(s) URL: retrying cannot help
            raise VidgenError(f"GET {where}: {type(exc).__name__}: refusing to follow it") from None
        except requests.RequestException as exc:
            self._discard(temporary)
            raise _Retry(f"GET {where}: {type(exc).__name__}") from None
        except BaseException:
            self._discard(temporary)
            raise
        return {
            "generation_id": result.id,
            "uri": str(destination),
            "bytes": size,
            "sha256": digest,
            "content_type": content_type,
            "actual_duration": result.actual_duration,
            "model": result.model,
        }

    @staticmethod
    def _stream_to(response: requests.Response, temporary: ObjectStoragePath) -> tuple[int, str]:
        if temporary.protocol in ("file", "local", ""):
            temporary.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with temporary.open("wb") as out:
            for chunk in response.iter_content(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def _discard(self, temporary: ObjectStoragePath) -> None:
        try:
            if temporary.exists():
                temporary.unlink()
        except Exception as err:  # best effort: the destination itself is untouched either way
            self.log.warning("Could not remove the partial download %s: %s", temporary, err)


def record_asset_events(context: Any, outlets: Any, manifest: dict[str, Any]) -> None:
    """Attach the manifest to the asset event of each asset in the task's ``outlets``.

    Airflow records one event per outlet asset when the task succeeds; a DAG scheduled on that asset
    then runs, and reads ``uri``, ``sha256``... from the event's ``extra``.
    """
    events = context.get("outlet_events")
    if events is None:
        return
    from airflow.providers.common.compat.sdk import Asset

    for outlet in outlets or []:
        if isinstance(outlet, Asset):
            events[outlet].extra.update(manifest)
