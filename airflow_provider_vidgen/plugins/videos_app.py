"""The Videos page: a FastAPI app the Airflow 3 API server mounts at ``/vidgen``.

- ``GET /vidgen/``: the page (HTML; the Airflow UI shows it in its navigation, in a frame).
- ``GET /vidgen/api/videos``: a page of saved videos, newest first (``dag_id``, ``generation_id``,
  ``since`` / ``until`` dates, ``offset``, ``limit``).
- ``GET /vidgen/api/stream?uri=...``: the saved object's bytes, with HTTP Range support, for a URI a
  manifest recorded in a DAG the user may read; anything else is 404.

Every route needs an authenticated user (the UI's JWT cookie or an ``Authorization: Bearer``
token) and shows only the DAGs Airflow's auth manager lets that user read.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from importlib.resources import files
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from airflow_provider_vidgen.plugins import index

CHUNK_BYTES = 1 << 20
#: The first bytes of an object read to check that it is a video before any of it is served.
HEAD_BYTES = 512
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
#: Byte positions past this are all "beyond any object" (a header's number may have thousands of digits).
_HUGE = 1 << 62


def _position(text: str) -> int:
    digits = text.lstrip("0")
    return _HUGE if len(digits) > 18 else int(digits or "0")


async def current_user(request: Request) -> Any:
    """FastAPI dependency: Airflow's user for this request (the JWT cookie or a bearer token)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    credentials = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if scheme.lower() == "bearer" and token else None
    )
    return await get_user(request, None, credentials)


def readable_dag_ids(user: Any) -> set[str]:
    """The DAGs the auth manager lets ``user`` read."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


UserDep = Annotated[Any, Depends(current_user)]


def _day(value: date | None, end: bool = False) -> datetime | None:
    if value is None:
        return None
    start = datetime.combine(value, time(), tzinfo=timezone.utc)
    return start + timedelta(days=1) if end else start


def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


_tables_ready = False


def _ensure_tables() -> None:
    global _tables_ready
    if not _tables_ready:
        from airflow import settings

        if settings.engine is None:
            raise HTTPException(503, "Airflow's metadata database is not configured")
        index.create_tables(settings.engine)
        _tables_ready = True


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions of a single ``Range: bytes=`` header; ``None`` for the whole object.

    :raises HTTPException: 416 when the range cannot be satisfied.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # a malformed or multi-range header: answer with the whole object (RFC 9110)
    first_text, last_text = match.groups()
    if first_text:
        first = _position(first_text)
        last = min(_position(last_text), size - 1) if last_text else size - 1
    else:  # the last N bytes
        suffix = _position(last_text)
        if suffix == 0:
            raise HTTPException(416, headers={"Content-Range": f"bytes */{size}"})
        first, last = max(size - suffix, 0), size - 1
    if first >= size or last < first:
        raise HTTPException(416, headers={"Content-Range": f"bytes */{size}"})
    return first, last


def _read(source: Any, first: int, length: int) -> Iterator[bytes]:
    try:
        source.seek(first)
        left = length
        while left > 0:
            chunk = source.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        source.close()


def content_type_of(item: dict[str, Any]) -> str:
    """The recorded ``Content-Type`` if it names a video, else one guessed from the name (MP4 by default)."""
    recorded = (item.get("content_type") or "").split(";", 1)[0].strip().lower()
    if recorded.startswith("video/"):
        return recorded
    guessed, _ = mimetypes.guess_type(item["uri"])
    return guessed if guessed and guessed.startswith("video/") else "video/mp4"


def create_app() -> FastAPI:
    """The Videos page's FastAPI app (mounted by the API server at ``/vidgen``)."""
    app = FastAPI(title="Vidgen videos", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(user: UserDep) -> HTMLResponse:
        html = files("airflow_provider_vidgen.plugins").joinpath("videos.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/videos")
    def list_videos(
        user: UserDep,
        dag_id: str | None = None,
        generation_id: str | None = None,
        since: Annotated[date | None, Query(description="first day (UTC), inclusive")] = None,
        until: Annotated[date | None, Query(description="last day (UTC), inclusive")] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 25,
    ) -> JSONResponse:
        readable = readable_dag_ids(user)
        _ensure_tables()
        with _session() as session:
            index.sync(session)
            found = index.list_videos(
                session,
                readable_dag_ids=readable,
                dag_id=dag_id or None,
                generation_id=generation_id or None,
                since=_day(since),
                until=_day(until, end=True),
                offset=offset,
                limit=limit,
            )
            dags = index.dag_ids(session, readable)
        return JSONResponse(
            {"videos": found.items, "has_more": found.has_more, "offset": offset, "limit": limit, "dag_ids": dags},
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/api/stream")
    def stream(request: Request, user: UserDep, uri: str) -> Response:
        readable = readable_dag_ids(user)
        _ensure_tables()
        with _session() as session:
            index.sync(session)
            item = index.recorded(session, uri, readable)
        if item is None:
            raise HTTPException(404, "No saved video with this URI in the DAGs you may read")
        from airflow_provider_vidgen.saving import _size, as_storage_path, video_container

        path = as_storage_path(item["uri"])  # the recorded URI, never anything built from the request
        try:
            size = _size(path)
            source = path.open("rb")
        except FileNotFoundError:
            raise HTTPException(404, "The saved object no longer exists") from None
        except OSError as err:
            raise HTTPException(502, f"The saved object cannot be read ({type(err).__name__})") from None
        try:
            head = source.read(HEAD_BYTES)
        except OSError as err:
            source.close()
            raise HTTPException(502, f"The saved object cannot be read ({type(err).__name__})") from None
        if video_container(head) is None:
            # A manifest XCom can be written through Airflow's REST API too: only video files are served,
            # never a configuration file, a key or a database that such a manifest points at.
            source.close()
            raise HTTPException(404, "The saved object is not a video")
        headers = {
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, no-store",
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
        }
        try:
            wanted = parse_range(request.headers.get("range"), size)
        except HTTPException:
            source.close()
            raise
        if wanted is None:
            headers["Content-Length"] = str(size)
            return StreamingResponse(_read(source, 0, size), 200, headers, media_type=content_type_of(item))
        first, last = wanted
        headers["Content-Length"] = str(last - first + 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return StreamingResponse(_read(source, first, last - first + 1), 206, headers, media_type=content_type_of(item))

    return app


__all__ = ["content_type_of", "create_app", "parse_range"]
