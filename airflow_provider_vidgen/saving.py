"""Saving a finished video to object storage before its temporary URL expires.

Shared by ``VideoDownloadOperator`` and the create operators' ``output_path``. The video is streamed
in 1 MiB chunks (bounded memory) to a temporary object beside the destination, checked against
``Content-Length``, then moved into place: a failed or interrupted download never leaves a partial
object at the destination. Only an answer that is a video is saved (see :func:`not_a_video`); a
destination that is a folder is refused before anything is created or downloaded. The download uses
a session of its own with no ``Authorization`` header, so the API key never reaches the video host,
even across redirects.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowFailException
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt

from airflow_provider_vidgen import metrics, protocol
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
    from airflow.providers.common.compat.sdk import ObjectStoragePath

CHUNK_BYTES = 1 << 20
IF_EXISTS = ("overwrite", "skip", "fail")

#: Answers of the video host that mean "this URL is no longer good": ask the API for a fresh one.
EXPIRED_STATUSES = frozenset({401, 403, 404, 410})

#: Content types that say nothing about the bytes: the body must then start like a video container.
GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
#: How much of the body is read and checked before anything is written.
HEAD_BYTES = 512
#: How much of a wrong answer is quoted in the error message.
QUOTE_BYTES = 100

_LOCAL_PROTOCOLS = ("file", "local", "")
_SIGNED_QUERY = re.compile(r"(https?://[^\s\"'<>?#]*)\?[^\s\"'<>#]*")


class VidgenOutputExistsError(VidgenError, AirflowFailException):
    """The destination already exists and ``if_exists="fail"``. Never retried."""


class VidgenDestinationError(VidgenError, AirflowFailException):
    """The destination names a folder (an existing one, or it ends with ``/``). Never retried.

    Raised before anything is created or downloaded, and, should a folder appear at the destination
    during the download, instead of moving the video into it.
    """


class VidgenNotAVideoError(VidgenError):
    """The video host answered 200 with something that is not a video, also for a fresh URL.

    Nothing was saved. Not transient within the task (it was tried with a fresh URL already), but a
    later try of the task may find the host serving the video again, so Airflow's retries apply.
    """


class _Retry(VidgenTransientError):
    """A failed download attempt that another attempt may fix."""

    def __init__(self, message: str, refresh_url: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.refresh_url = refresh_url


class _NotAVideo(_Retry):
    """A 200 answer that is not a video: tried once more with a fresh URL, then the save fails."""

    def __init__(self, message: str) -> None:
        super().__init__(message, refresh_url=True)


def _folder_error(destination: Any) -> VidgenDestinationError:
    return VidgenDestinationError(
        f"destination {destination} is a folder: give the full name of the file to write "
        f"(e.g. {str(destination).rstrip('/')}/video.mp4); nothing was created or downloaded"
    )


def check_destination(destination: ObjectStoragePath) -> None:
    """Refuse a destination that is an existing folder (one stat; on object stores, a prefix).

    :raises VidgenDestinationError: it is a folder (nothing was done).
    """
    if destination.is_dir():
        raise _folder_error(destination)


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
    if text.endswith(("/", os.sep)):  # ObjectStoragePath and abspath would drop the slash silently
        raise _folder_error(text)
    if "://" not in text:
        text = "file://" + os.path.abspath(text)
    return ObjectStoragePath(text)


def validate_if_exists_option(value: str, name: str = "if_exists") -> None:
    """Reject an unknown value of the option ``if_exists`` / ``if_output_exists`` (not a check of the destination).

    :raises VidgenValidationError: ``value`` is not one of :data:`IF_EXISTS`.
    """
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
    :raises VidgenDestinationError: it is a folder, whatever ``if_exists`` says (nothing was done).
    """
    check_destination(destination)
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
        self,
        generation_id: str,
        get_result: Callable[[str], GenerationResult],
        destination: ObjectStoragePath,
        if_exists: str = "overwrite",
    ) -> dict[str, Any]:
        """Read the result now (never trust an old URL), download the video, move it into place.

        :param generation_id: The generation whose video to save.
        :param get_result: Reads the generation's result (``VidgenHook.get_result``).
        :param destination: Where the video goes.
        :param if_exists: What to do with an object found at ``destination`` when the video is moved
            into place (one that appeared during the download): ``overwrite`` replaces it; ``skip``
            keeps it and returns its manifest (``"skipped": true``); ``fail`` keeps it and raises.
        :returns: The manifest: ``generation_id, uri, bytes, sha256, content_type, actual_duration, model``.
        :raises VidgenDestinationError: ``destination`` is a folder (checked before anything is read).
        :raises VidgenNotAVideoError: the host answered something that is not a video, twice.
        :raises VidgenOutputExistsError: an object appeared at ``destination`` and ``if_exists`` is ``fail``.
        """
        validate_if_exists_option(if_exists)
        check_destination(destination)
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
        not_a_video = 0
        try:
            for attempt in retrying:
                with attempt:
                    if refresh:
                        result = self._completed(generation_id, get_result)  # ask the API for a fresh URL
                    try:
                        manifest = self._download(result, destination, replace=if_exists == "overwrite")
                    except _NotAVideo as err:
                        not_a_video += 1
                        if not_a_video > 1:  # a fresh URL did not help: fail now, clearly
                            raise self._not_a_video(generation_id, err, fresh_url_tried=True) from None
                        refresh = True
                        raise
                    except _Retry as err:
                        refresh = err.refresh_url
                        raise
        except RetryError as err:
            last = err.last_attempt.exception()
            if isinstance(last, _NotAVideo):
                raise self._not_a_video(generation_id, last, fresh_url_tried=False) from None
            raise VidgenTransientError(
                f"Could not download the video of generation {generation_id} to {destination}: {last} "
                f"(gave up after {err.last_attempt.attempt_number} attempts; nothing was left at the destination)"
            ) from None
        except _Exists:
            if if_exists == "fail":
                raise VidgenOutputExistsError(
                    f"{destination} appeared while the video of generation {generation_id} was being downloaded "
                    f"(if_exists='fail'): it was kept, and the download discarded"
                ) from None
            self.log.warning(
                "%s appeared while the video of generation %s was being downloaded (if_exists='skip'): "
                "it was kept, and the download discarded",
                destination,
                generation_id,
            )
            return existing_manifest(destination, generation_id)
        metrics.saved(manifest)
        self.log.info(
            "Saved generation %s to %s (%d bytes, sha256 %s)",
            generation_id,
            manifest["uri"],
            manifest["bytes"],
            manifest["sha256"],
        )
        return manifest

    @staticmethod
    def _not_a_video(generation_id: str, err: _NotAVideo, fresh_url_tried: bool) -> VidgenNotAVideoError:
        again = "The same with a fresh URL from the API; n" if fresh_url_tried else "N"
        return VidgenNotAVideoError(
            f"Could not save the video of generation {generation_id}: {err}. {again}othing was saved"
        )

    @staticmethod
    def _completed(generation_id: str, get_result: Callable[[str], GenerationResult]) -> GenerationResult:
        result = get_result(generation_id)
        if result.is_failed:
            raise VidgenGenerationFailedError(generation_id, result.error)
        if result.is_completed and not (result.video_url or "").strip():
            raise VidgenError(
                f"Generation {generation_id} is completed, but the API's answer has no video_url: there is no "
                f"video to download (nothing was saved). A later try of the task reads the result again."
            )
        if not result.is_completed:
            raise VidgenError(
                f"Generation {generation_id} is not completed (status: {result.status}); there is no video to "
                f"save yet. Wait for it first (VideoGenerationSensor, or wait_for_completion=True)."
            )
        return result

    def _download(self, result: GenerationResult, destination: ObjectStoragePath, replace: bool) -> dict[str, Any]:
        import requests

        url = str(result.video_url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise VidgenError(f"Generation {result.id}: video_url is not an http(s) URL; refusing to fetch it")
        where = protocol.url_for_log(url)
        temporary = _temporary_for(destination)
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
                    chunks = response.iter_content(CHUNK_BYTES)
                    head = _read_head(chunks)
                    problem = not_a_video(content_type, head)
                    if problem is not None:
                        quoted = self._quote(head, url)
                        raise _NotAVideo(f"GET {where}: HTTP 200 but {problem}; the answer starts with {quoted}")
                    boxes = _IsoBoxes() if video_container(head) == "ISO-BMFF" else None
                    size, digest = self._stream_to(head, chunks, temporary, boxes)
                    # A host may compress anyway: Content-Length then counts the bytes on the wire, and
                    # what is saved is the video they decode to.
                    encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
                    received = response.raw.tell() if encoding not in ("", "identity") else size
            if expected is not None and expected.isdigit():
                if int(expected) != received:
                    raise _Retry(f"GET {where}: got {received} of {expected} bytes")
            elif boxes is not None and not boxes.complete():
                # No length announced: a connection closed early looks like the end of the body, but an
                # MP4 ends exactly where its last top-level box does.
                raise _Retry(f"GET {where}: the body ends inside an MP4 box (got {size} bytes, no Content-Length)")
            _move_into_place(temporary, destination, replace)
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

    def _quote(self, head: bytes, url: str) -> str:
        """The first bytes of a wrong answer, for an error message: bounded, printable, secret-free.

        A page may echo the link it refuses: query strings (signatures) are cut, and so is the API key.
        """
        text = head[:QUOTE_BYTES].decode("utf-8", "replace")
        query = urlsplit(url).query
        if query:
            text = text.replace(query, "...")
        text = protocol.redact(_SIGNED_QUERY.sub(r"\1?...", text), self.settings.api_key)
        text = "".join(c if c.isprintable() else " " for c in text)
        text = " ".join(text.split())
        more = "..." if len(head) > QUOTE_BYTES else ""
        return repr(text) + more if text else "nothing (an empty body)"

    @staticmethod
    def _stream_to(
        head: bytes, chunks: Iterator[bytes], temporary: ObjectStoragePath, boxes: _IsoBoxes | None = None
    ) -> tuple[int, str]:
        if temporary.protocol in _LOCAL_PROTOCOLS:
            temporary.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with temporary.open("wb") as out:
            for chunk in itertools.chain((head,), chunks):
                out.write(chunk)
                digest.update(chunk)
                if boxes is not None:
                    boxes.feed(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def _discard(self, temporary: ObjectStoragePath) -> None:
        try:
            if temporary.exists():
                temporary.unlink()
        except Exception as err:  # best effort: the destination itself is untouched either way
            self.log.warning("Could not remove the partial download %s: %s", temporary, err)


#: The longest file name most filesystems take (bytes); a temporary name is kept within it.
_NAME_MAX_BYTES = 255


def _temporary_for(destination: ObjectStoragePath) -> ObjectStoragePath:
    """A temporary object beside ``destination``: ``.<name>.<random>.part``.

    The name is shortened (to whole characters) when the temporary name would be longer than a file
    name may be, so any destination whose own name is valid can be written.
    """
    suffix = f".{uuid.uuid4().hex}.part"
    room = _NAME_MAX_BYTES - len(suffix) - 1
    name = destination.name.encode("utf-8")[:room].decode("utf-8", "ignore")
    return destination.parent / f".{name}{suffix}"


class _IsoBoxes:
    """Follows the top-level boxes of an ISO-BMFF (MP4, MOV) body as it streams by.

    Each box starts with its size (4 bytes; 1: a 64-bit size follows the type; 0: the box runs to the
    end of the file) and its type (4 bytes). A complete file ends exactly where a box ends; a body cut
    short ends inside one.
    """

    def __init__(self) -> None:
        self.position = 0  # bytes fed so far
        self.next_box = 0  # where the next top-level box starts
        self.header = b""  # the part of its header fed so far
        self.open_ended = False  # a box of size 0 runs to the end: nothing more to check
        self.broken = False

    def feed(self, chunk: bytes) -> None:
        index = 0
        while not (self.open_ended or self.broken):
            index = max(index, self.next_box + len(self.header) - self.position)
            if index >= len(chunk):
                break
            need = (16 if self.header[:4] == b"\x00\x00\x00\x01" else 8) - len(self.header)
            self.header += chunk[index : index + need]
            index += need
            if len(self.header) < 8:
                break
            size = int.from_bytes(self.header[:4], "big")
            if size == 1:
                if len(self.header) < 16:
                    continue
                size = int.from_bytes(self.header[8:16], "big")
            if size == 0:
                self.open_ended = True
            elif size < len(self.header):
                self.broken = True
            else:
                self.next_box += size
                self.header = b""
        self.position += len(chunk)

    def complete(self) -> bool:
        """Whether the body fed so far ends exactly at the end of a top-level box."""
        return self.open_ended or (not self.broken and not self.header and self.next_box == self.position)


def _read_head(chunks: Iterator[bytes]) -> bytes:
    """At least ``HEAD_BYTES`` of the body (fewer only if it is shorter), from its first chunks."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= HEAD_BYTES:
            break
    return head


def video_container(head: bytes) -> str | None:
    """The video container the first bytes of a file announce, or ``None``.

    Recognised: ISO-BMFF (MP4, MOV, 3GP: an ``ftyp`` box first; QuickTime files may start with
    ``moov`` or ``mdat``), Matroska/WebM (EBML), Ogg, AVI, ASF/WMV, FLV, MPEG-TS and MPEG-PS.
    """
    if head[4:8] in (b"ftyp", b"moov", b"mdat"):
        return "ISO-BMFF"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "ASF"
    if head.startswith(b"FLV\x01"):
        return "FLV"
    if len(head) > 188 and head[0] == head[188] == 0x47:
        return "MPEG-TS"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "MPEG-PS"
    return None


def _looks_like_text(head: bytes) -> bool:
    """Whether the first bytes are a text document, not a video.

    HTML, XML or JSON (after an optional BOM and blanks), or any body whose first bytes are all
    printable UTF-8 text ("Access Denied", "expired"): every video container starts with binary
    bytes (a box size, a magic number), so such a body is an error message, never a video.
    """
    body = head.removeprefix(b"\xef\xbb\xbf")
    if body.lstrip()[:1] in (b"<", b"{", b"["):
        return True
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(body) - 3:  # not just a character cut at the end of the head
            return False
        text = body[: err.start].decode("utf-8")
    return bool(text) and all(char.isprintable() or char in "\t\n\r\f\v" for char in text)


def not_a_video(content_type: str | None, head: bytes) -> str | None:
    """Why an HTTP 200 answer is not the video, or ``None`` if it may be saved.

    :param content_type: The answer's ``Content-Type`` header.
    :param head: The first bytes of its body (``HEAD_BYTES``, or all of a shorter body).

    - An empty body is not a video, and neither is a text document (HTML, XML, JSON, plain text),
      whatever its ``Content-Type``.
    - ``video/*``: accepted.
    - Any other type (``application/octet-stream``, ``application/mp4``, a download type such as
      ``application/x-download``, or no ``Content-Type``): accepted only if the body starts like a
      video container (:func:`video_container`).
    """
    media = (content_type or "").split(";")[0].strip().lower()
    if not head:
        return f"the body is empty (Content-Type {content_type or 'absent'})"
    if _looks_like_text(head):
        if media.startswith("video/"):
            return f"Content-Type is {media} and the body is a text document"
        if media in GENERIC_TYPES or not media:
            return f"Content-Type is {media or 'absent'} and the body does not start like a video container"
        return f"Content-Type is {content_type!r}, not a video, and the body is a text document"
    if media.startswith("video/") or video_container(head) is not None:
        return None
    if media in GENERIC_TYPES or not media:
        return f"Content-Type is {media or 'absent'} and the body does not start like a video container"
    return f"Content-Type is {content_type!r}, not a video, and the body does not start like a video container"


class _Exists(Exception):
    """An object is at the destination, and it is not to be replaced (the temporary one is discarded)."""


def _move_into_place(temporary: ObjectStoragePath, destination: ObjectStoragePath, replace: bool = True) -> None:
    """Move the complete download to ``destination`` itself, never into a folder found there.

    A plain move (``fsspec``'s ``mv``) moves a file *into* a folder at the target. Locally,
    ``os.replace`` replaces a file atomically and refuses a folder, and without ``replace`` a hard
    link puts the file there only if nothing is there (atomically, where links are supported);
    elsewhere the object is copied to exactly the destination key (``cp_file``), which never
    descends into a prefix.

    :raises _Exists: without ``replace``, an object is at ``destination`` (it is left as it is).
    """
    if destination.protocol in _LOCAL_PROTOCOLS:
        source, target = temporary.path, destination.path
        try:
            if replace:
                os.replace(source, target)
                return
            try:
                os.link(source, target)
            except FileExistsError:
                if os.path.isdir(target):
                    raise IsADirectoryError(target) from None
                raise _Exists from None
            except OSError:  # no hard links on this filesystem: check, then move
                if os.path.lexists(target):
                    raise IsADirectoryError(target) if os.path.isdir(target) else _Exists from None
                os.replace(source, target)
                return
            os.unlink(source)
        except IsADirectoryError:
            raise _folder_error(destination) from None
        return
    if destination.is_dir():
        raise _folder_error(destination)
    if not replace and destination.exists():
        raise _Exists
    fs = destination.fs
    fs.cp_file(temporary.path, destination.path)
    fs.rm_file(temporary.path)


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


#: The ``dag_run.conf`` key that a run of a consumer DAG without triggering events reads its videos
#: from (a manual run, ``airflow dags test --conf``): a list of manifests.
CONF_KEY = "vidgen_videos"


def saved_videos(context: Any, include_skipped: bool = False) -> list[dict[str, Any]]:
    """The manifests of every video behind this run of a DAG scheduled on a saving task's asset.

    Airflow does not start one consumer run per asset event: a run receives every event of its assets
    since the consumer's previous asset-triggered run, so one run often carries several videos (from
    one or several producer runs). Iterate all of them; this reads them from
    ``triggering_asset_events`` (``triggering_dataset_events`` on Airflow 2), oldest first, each
    video once (an event reached through two assets, or an asset and an alias, counts once). Events
    without a manifest (from other producers of the asset) are left out, and so are those of a kept
    object (``"skipped": true``) unless ``include_skipped``.

    A run without triggering events (triggered by hand, or ``airflow dags test`` with ``--conf``)
    reads a list of manifests from its conf key ``vidgen_videos`` instead: that is how a consumer DAG
    is tested offline, or made to process given videos again.

    :param context: The task's context (``get_current_context()``, or ``**context`` of a ``@task``).
    :param include_skipped: Also return the manifests of objects that were kept, not saved anew.
    :raises VidgenValidationError: ``vidgen_videos`` in the conf is not a list of manifests.
    """
    events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
    found: list[tuple[Any, dict[str, Any]]] = []
    for batch in events.values():
        for event in batch:
            found.append((getattr(event, "timestamp", None), dict(getattr(event, "extra", None) or {})))
    if not found:
        dag_run = context.get("dag_run")
        listed = (getattr(dag_run, "conf", None) or {}).get(CONF_KEY, [])
        if not isinstance(listed, list) or not all(isinstance(m, dict) and m.get("uri") for m in listed):
            raise VidgenValidationError(f"dag_run.conf[{CONF_KEY!r}]: must be a list of manifests, each with a 'uri'")
        found = [(None, dict(manifest)) for manifest in listed]
    found.sort(key=lambda pair: (pair[0] is not None, pair[0] or 0))
    videos: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for _, manifest in found:
        key = (manifest.get("uri"), manifest.get("sha256"), manifest.get("generation_id"))
        if not manifest.get("uri") or key in seen or (manifest.get("skipped") and not include_skipped):
            continue
        seen.add(key)
        videos.append(manifest)
    return videos
