"""A local emulator of the Videos / StarVideos API, for tests, demos and benchmarks.

It serves the three documented endpoints with the documented bodies under the production base
path (``/kyyReactApiServer``), checks the bearer key and validates requests the way the server
would, moves each generation through a scriptable timeline (``queued`` -> ``processing`` ->
``completed``/``failed``) and can inject faults. Finished videos are served as a small real MP4
from a second listener (another port), a stand-in for the temporary download host.

Built on ``aiohttp.web``: one asyncio event loop holds thousands of concurrent keep-alive
connections, which makes the emulator usable as the load target of the trigger benchmark.

Use it in-process (``with Emulator() as emu: ...`` runs the server on a background thread), from
pytest (``airflow_provider_vidgen.testing.pytest_plugin``), or from the command line
(``python -m airflow_provider_vidgen.testing``), where ``/_emulator/...`` admin endpoints script and
inspect it (``GET /_emulator/requests``, ``/generations``, ``/stats``; ``POST /_emulator/fault``, ...).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

BASE_PATH = "/kyyReactApiServer"
#: A request carrying this header (any value) gets HTTP 404 from the result endpoint until the
#: generation is terminal: the semantics of a generic "wait until the URL stops answering 404"
#: sensor, used by the trigger benchmark's baseline.
NOT_FOUND_UNTIL_DONE_HEADER = "X-Emulator-404-Until-Done"
DEFAULT_API_KEY = "test-key"
ENDPOINTS = ("videos_create", "starvideos_create", "result", "download")
FAULT_KINDS = (
    "status",
    "drop",
    "delay",
    "malformed",
    "envelope",
    "unknown_status",
    "truncate",
    "redirect",
    "gzip",
    "content",
)


@dataclass
class Timeline:
    """How a generation moves through its statuses, in seconds since it was created.

    :param queued_for: Seconds in ``queued``.
    :param processing_for: Seconds in ``processing`` afterwards.
    :param outcome: Final status: ``completed``, ``failed`` or any other (undocumented) string.
    :param error: The ``error`` text of a ``failed`` generation.
    :param actual_duration: ``actualDuration`` of a completed one (default: the requested duration).
    """

    queued_for: float = 0.5
    processing_for: float = 1.0
    outcome: str = "completed"
    error: str = "generation failed: the content policy rejected the prompt"
    actual_duration: float | None = None


@dataclass
class Fault:
    """A fault injected into the next ``times`` matching requests.

    :param kind: ``status`` (answer ``status`` with an error body, ``Retry-After`` if given),
        ``drop`` (close the connection without an answer), ``delay`` (answer ``delay`` seconds late),
        ``malformed`` (HTTP 200 with a body that is not JSON), ``envelope`` (HTTP 200 with
        ``{"code": code, "msg": msg, "data": null}``), ``unknown_status`` (result answers ``status``
        = ``value``); for downloads also ``truncate`` (announce the full length, send half, drop the
        connection), ``redirect`` (302 to another path of the download host) and ``gzip`` (compress
        the body when the client accepts gzip, with the compressed ``Content-Length``) and ``content``
        (HTTP 200 whose body is ``text``, default the video itself, sent as ``content_type``: e.g. the
        HTML page some hosts answer for an expired link, an empty body, a wrong type).
    :param text: With ``status``: a plain-text body instead of the JSON one (a proxy's answer).
    :param endpoint: ``videos_create``, ``starvideos_create``, ``create`` (both), ``result``,
        ``download`` or ``any``.
    :param content_type: With ``content``: the ``Content-Type`` of the answer.
    :param times: How many matching requests it applies to.
    :param after_create: For creates: create (and "bill") the task first, then apply the fault;
        the client cannot know the task exists.
    """

    kind: str
    endpoint: str = "any"
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    after_create: bool = False
    code: str = "500"
    msg: str = "internal error, please retry"
    value: str = "paused"
    text: str | None = None
    content_type: str = "application/octet-stream"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.endpoint not in (*ENDPOINTS, "create", "any"):
            raise ValueError(f"unknown endpoint {self.endpoint!r}")

    def matches(self, endpoint: str) -> bool:
        """Whether this fault applies to a request of ``endpoint``."""
        if self.endpoint == "any":
            return True
        if self.endpoint == "create":
            return endpoint in ("videos_create", "starvideos_create")
        return self.endpoint == endpoint


@dataclass
class Generation:
    """A task the emulator created."""

    id: str
    family: str
    model: str
    created: int
    created_at: float
    duration: int
    timeline: Timeline
    body: dict[str, Any]

    def status(self, now: float) -> str:
        """The status at emulator time ``now``."""
        age = now - self.created_at
        if age < self.timeline.queued_for:
            return "queued"
        if age < self.timeline.queued_for + self.timeline.processing_for:
            return "processing"
        return self.timeline.outcome


@dataclass
class RecordedRequest:
    """One request the emulator received (admin requests are not recorded)."""

    time: float
    method: str
    path: str
    endpoint: str
    authorization: str | None
    body: Any
    peer: str | None = None
    user_agent: str | None = None
    status: int | None = None
    fault: str | None = None
    generation_id: str | None = None


@dataclass
class _State:
    timeline: Timeline = field(default_factory=Timeline)
    queued_timelines: list[Timeline] = field(default_factory=list)
    prompt_timelines: dict[str, list[Timeline]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    generations: dict[str, Generation] = field(default_factory=dict)
    log: list[RecordedRequest] = field(default_factory=list)
    clock_offset: float = 0.0


class _Dropped(Exception):
    """The handler closed the connection on purpose."""


def _peer(request: web.Request) -> str | None:
    # host:port of the client's socket: one value per TCP connection, so tests can count connections.
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else None


def _sample_video() -> bytes:
    return resources.files("airflow_provider_vidgen.testing").joinpath("sample.mp4").read_bytes()


def _check_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_url_list(body: dict[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(_check_url(item) for item in value):
        return f"{name} must be an array of URLs"
    if len(value) > limit:
        return f"{name} supports at most {limit} items"
    return None


def validate_videos(body: Any) -> str | None:
    """The server's answer to a Videos create body: an error message, or ``None`` if valid."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    allowed = {
        "model",
        "prompt",
        "duration",
        "ratio",
        "resolution",
        "image",
        "lastFrameImage",
        "referenceImages",
        "referenceVideos",
    }
    unknown = sorted(set(body) - allowed)
    if unknown:
        return f"unknown parameter(s): {', '.join(unknown)}"
    if body.get("model") not in ("videos", "videos_fast"):
        return "model must be videos or videos_fast"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if len(prompt) > 1500:
        return "prompt exceeds 1500 characters"
    duration = body.get("duration")
    if type(duration) is not int or not 4 <= duration <= 15:
        return "duration must be an integer between 4 and 15"
    if body.get("ratio", "16:9") not in ("16:9", "9:16"):
        return "ratio must be 16:9 or 9:16"
    if body.get("resolution", "720p") != "720p":
        return "resolution must be 720p"
    has_image, has_last = "image" in body, "lastFrameImage" in body
    if has_image != has_last:
        return "image and lastFrameImage must be used together"
    for name in ("image", "lastFrameImage"):
        if name in body and not _check_url(body[name]):
            return f"{name} must be a URL"
    for name, limit in (("referenceImages", 4), ("referenceVideos", 3)):
        problem = _check_url_list(body, name, limit)
        if problem:
            return problem
    if has_image and ("referenceImages" in body or "referenceVideos" in body):
        return "first/last frame mode cannot be combined with reference material"
    return None


def validate_starvideos(body: Any) -> str | None:
    """The server's answer to a StarVideos create body: an error message, or ``None`` if valid."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    unknown = sorted(set(body) - {"prompt", "model", "duration", "ratio", "images"})
    if unknown:
        return f"unknown parameter(s): {', '.join(unknown)}"
    if body.get("model") != "starvideos_v3":
        return "model must be starvideos_v3"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    duration = body.get("duration", 5)
    if type(duration) is not int or not 3 <= duration <= 15:
        return "duration must be an integer between 3 and 15"
    if body.get("ratio", "16:9") not in ("16:9", "9:16"):
        return "ratio must be 16:9 or 9:16"
    # The documented server ignores images beyond the first 2; it does not reject them.
    return _check_url_list(body, "images", 10**6)


class Emulator:
    """The API emulator. Thread-safe; runs its own event loop on a background thread.

    :param api_key: The bearer key it accepts.
    :param host: Interface to listen on (loopback).
    :param port: API port (0 = any free port).
    :param download_port: Port of the download host stand-in (0 = any free port).
    :param timeline: Default timeline of new generations.
    :param url_ttl: Seconds a ``video_url`` stays valid after the result answer that issued it.
    :param video_bytes: Size of the served video; by default the bundled small MP4. A larger size
        repeats the MP4's bytes (streamed, for download benchmarks).
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        download_port: int = 0,
        timeline: Timeline | None = None,
        url_ttl: float = 3600.0,
        video_bytes: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self._port = port
        self._download_port = download_port
        self.url_ttl = url_ttl
        self._lock = threading.Lock()
        self._default_timeline = timeline or Timeline()
        self._state = _State(timeline=replace(self._default_timeline))
        self._ids = itertools.count(1)
        self._video = _sample_video()
        self.video_bytes = video_bytes if video_bytes is not None else len(self._video)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self.port = 0
        self.download_port = 0

    # -- addresses ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API base URL to put in the connection's host field."""
        return f"http://{self.host}:{self.port}{BASE_PATH}"

    @property
    def download_base_url(self) -> str:
        """Origin of the download host stand-in."""
        return f"http://{self.host}:{self.download_port}"

    def airflow_conn_json(self) -> str:
        """A ``AIRFLOW_CONN_...`` value pointing at this emulator."""
        return json.dumps({"conn_type": "vidgen", "host": self.base_url, "password": self.api_key})

    # -- scripting ------------------------------------------------------------------------------

    def set_timeline(self, timeline: Timeline) -> None:
        """Default timeline of generations created from now on."""
        with self._lock:
            self._state.timeline = timeline

    def queue_timeline(self, *timelines: Timeline) -> None:
        """Timelines for the next creates, in order (then the default again)."""
        with self._lock:
            self._state.queued_timelines.extend(timelines)

    def script_prompt(self, marker: str, *timelines: Timeline) -> None:
        """Generations whose prompt contains ``marker`` follow ``timelines`` in order, the last one repeating."""
        if not timelines:
            raise ValueError("give at least one timeline")
        with self._lock:
            self._state.prompt_timelines[marker] = list(timelines)

    def add_fault(self, fault: Fault | None = None, **kwargs: Any) -> Fault:
        """Inject a fault (a :class:`Fault` or its keyword arguments)."""
        fault = fault or Fault(**kwargs)
        with self._lock:
            self._state.faults.append(fault)
        return fault

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (timelines and URL expiry follow it)."""
        with self._lock:
            self._state.clock_offset += seconds

    def reset(self) -> None:
        """Forget generations, faults, scripts and the request log (back to the initial timeline)."""
        with self._lock:
            self._state = _State(timeline=replace(self._default_timeline))

    # -- inspection -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log."""
        with self._lock:
            return list(self._state.log)

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Logged requests of one endpoint (``videos_create``, ``starvideos_create``, ``result``, ``download``)."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def creates(self) -> list[RecordedRequest]:
        """Logged create requests of both families."""
        return [r for r in self.requests if r.endpoint in ("videos_create", "starvideos_create")]

    def connections(self, endpoint: str | None = None) -> set[str]:
        """Distinct client connections (host:port) seen, optionally for one endpoint only."""
        return {r.peer for r in self.requests if r.peer and (endpoint is None or r.endpoint == endpoint)}

    def generation(self, generation_id: str) -> Generation:
        """A created generation, by id."""
        with self._lock:
            return self._state.generations[generation_id]

    @property
    def generations(self) -> list[Generation]:
        """All created (billed) generations."""
        with self._lock:
            return list(self._state.generations.values())

    def now(self) -> float:
        """The emulator's clock (unix seconds, plus :meth:`advance` offsets)."""
        return time.time() + self._state.clock_offset

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving on a background thread; return once both listeners accept connections."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as err:  # surfaced to the caller of start()
                errors.append(err)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="vidgen-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("emulator did not start within 30s")
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop the background server."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._thread = None
            self._loop = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def start_async(self) -> None:
        """Start both listeners on the running event loop."""
        api = web.Application(client_max_size=8 * 1024 * 1024)
        api.router.add_post(BASE_PATH + "/v1/videos/videos", self._videos_create)
        api.router.add_post(BASE_PATH + "/v1/starvideos/videos", self._starvideos_create)
        api.router.add_get(BASE_PATH + "/v1/result/{id}", self._result)
        api.router.add_get("/_emulator/requests", self._admin_requests)
        api.router.add_get("/_emulator/generations", self._admin_generations)
        api.router.add_get("/_emulator/stats", self._admin_stats)
        api.router.add_post("/_emulator/{action}", self._admin_action)
        downloads = web.Application()
        downloads.router.add_get("/files/{name}", self._download)
        downloads.router.add_get("/blobs/{name}", self._download)
        for app, attr, port in ((api, "port", self._port), (downloads, "download_port", self._download_port)):
            runner = web.AppRunner(app, access_log=None, keepalive_timeout=75.0)
            await runner.setup()
            site = web.TCPSite(runner, self.host, port, backlog=4096)
            await site.start()
            self._runners.append(runner)
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            setattr(self, attr, sockets[0].getsockname()[1])

    async def stop_async(self) -> None:
        """Stop both listeners."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    # -- request handling -----------------------------------------------------------------------

    def _record(self, request: web.Request, endpoint: str, body: Any) -> RecordedRequest:
        entry = RecordedRequest(
            time=time.time(),
            method=request.method,
            path=request.path_qs,
            endpoint=endpoint,
            authorization=request.headers.get("Authorization"),
            body=body,
            peer=_peer(request),
            user_agent=request.headers.get("User-Agent"),
        )
        with self._lock:
            self._state.log.append(entry)
        return entry

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.times > 0 and fault.matches(endpoint):
                    fault.times -= 1
                    return fault
        return None

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(text=json.dumps(data), status=status, content_type="application/json", headers=headers)

    @staticmethod
    def _envelope(code: str, msg: str | None, data: Any = None, status: int = 200) -> web.Response:
        return Emulator._json({"code": code, "msg": msg, "data": data}, status)

    async def _apply_fault(self, request: web.Request, fault: Fault, entry: RecordedRequest) -> web.Response | None:
        """Answer per ``fault``; ``None`` means: go on and answer normally (after a delay)."""
        entry.fault = fault.kind
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise _Dropped
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            if fault.text is not None:
                return web.Response(text=fault.text, status=fault.status, headers=headers)
            return self._json({"code": str(fault.status), "msg": fault.msg, "data": None}, fault.status, headers)
        if fault.kind == "malformed":
            return web.Response(text='{"id": "oops", "status": ', status=200, content_type="application/json")
        if fault.kind == "envelope":
            return self._envelope(fault.code, fault.msg)
        return None  # unknown_status is applied by the result handler

    async def _handle(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        body: Any = None
        if request.method == "POST":
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        entry = self._record(request, endpoint, body)
        try:
            response = await self._dispatch(request, endpoint, body, entry)
        except _Dropped:
            # The transport is already aborted: this answer is never sent.
            return web.Response(status=499)
        entry.status = response.status
        return response

    async def _dispatch(
        self, request: web.Request, endpoint: str, body: Any, entry: RecordedRequest
    ) -> web.StreamResponse:
        if not self._authorized(request):
            return self._json({"code": "401", "msg": "invalid or missing API key", "data": None}, 401)
        fault = self._take_fault(endpoint)
        if fault is not None and not fault.after_create:
            answer = await self._apply_fault(request, fault, entry)
            if answer is not None:
                return answer
        if endpoint == "videos_create":
            response = self._create_videos(body, entry)
        elif endpoint == "starvideos_create":
            response = self._create_starvideos(body, entry)
        else:
            response = self._read_result(
                request.match_info["id"], fault, entry, NOT_FOUND_UNTIL_DONE_HEADER in request.headers
            )
        if fault is not None and fault.after_create:
            answer = await self._apply_fault(request, fault, entry)
            if answer is not None:
                return answer
        return response

    def _new_generation(self, family: str, body: dict[str, Any], default_duration: int) -> Generation:
        with self._lock:
            state = self._state
            timeline = state.timeline
            for marker, scripted in state.prompt_timelines.items():
                if marker in body.get("prompt", ""):
                    timeline = scripted.pop(0) if len(scripted) > 1 else scripted[0]
                    break
            else:
                if state.queued_timelines:
                    timeline = state.queued_timelines.pop(0)
            number = next(self._ids)
            prefix = "proj_" if family == "videos" else "video_starvideos_"
            generation = Generation(
                id=f"{prefix}{number:010d}",
                family=family,
                model=body["model"],
                created=int(time.time()),
                created_at=time.time() + state.clock_offset,
                duration=body.get("duration", default_duration),
                timeline=replace(timeline),
                body=body,
            )
            state.generations[generation.id] = generation
        return generation

    def _create_videos(self, body: Any, entry: RecordedRequest) -> web.Response:
        problem = validate_videos(body)
        if problem:
            return self._envelope("400", problem, status=400)
        generation = self._new_generation("videos", body, 5)
        entry.generation_id = generation.id
        return self._envelope("0", None, {"projectId": generation.id})

    def _create_starvideos(self, body: Any, entry: RecordedRequest) -> web.Response:
        problem = validate_starvideos(body)
        if problem:
            return self._json({"error": {"message": problem, "type": "invalid_request_error"}}, 400)
        generation = self._new_generation("starvideos", body, 5)
        entry.generation_id = generation.id
        return self._json(
            {
                "id": generation.id,
                "object": "video",
                "created": generation.created,
                "model": generation.model,
                "status": "queued",
                "error": None,
            }
        )

    def _read_result(
        self, generation_id: str, fault: Fault | None, entry: RecordedRequest, not_found_until_done: bool = False
    ) -> web.Response:
        entry.generation_id = generation_id
        with self._lock:
            generation = self._state.generations.get(generation_id)
        if generation is None:
            return self._json({"code": "404", "msg": f"task {generation_id} not found", "data": None}, 404)
        now = self.now()
        status = generation.status(now)
        if fault is not None and fault.kind == "unknown_status":
            status = fault.value
        if not_found_until_done and status not in ("completed", "failed"):
            return self._json({"code": "404", "msg": f"task {generation_id} is {status}", "data": None}, 404)
        answer: dict[str, Any] = {
            "id": generation.id,
            "object": "video",
            "created": generation.created,
            "model": generation.model,
            "status": status,
            "video_url": None,
            "error": None,
        }
        if status == "completed":
            expires = int(now + self.url_ttl)
            answer["video_url"] = f"{self.download_base_url}/files/{generation.id}.mp4?expires={expires}"
            duration = generation.timeline.actual_duration
            answer["actualDuration"] = duration if duration is not None else generation.duration
        elif status == "failed":
            answer["error"] = generation.timeline.error
        return self._json(answer)

    async def _videos_create(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "videos_create")

    async def _starvideos_create(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "starvideos_create")

    async def _result(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "result")

    def video_content(self) -> bytes:
        """The exact bytes a download of any finished video returns."""
        repeats = -(-self.video_bytes // len(self._video))
        return (self._video * repeats)[: self.video_bytes]

    async def _download(self, request: web.Request) -> web.StreamResponse:
        entry = self._record(request, "download", None)
        fault = self._take_fault("download")
        if fault is not None and fault.kind == "redirect":
            entry.fault, entry.status = "redirect", 302
            raise web.HTTPFound(f"/blobs/{request.match_info['name']}?{request.query_string}")
        if fault is not None and fault.kind == "gzip" and "gzip" in request.headers.get("Accept-Encoding", ""):
            entry.fault, entry.status = "gzip", 200
            return web.Response(
                body=gzip.compress(self.video_content()),
                headers={"Content-Type": "video/mp4", "Content-Encoding": "gzip"},
            )
        if fault is not None and fault.kind == "content":
            entry.fault, entry.status = "content", 200
            body = self.video_content() if fault.text is None else fault.text.encode()
            return web.Response(body=body, headers={"Content-Type": fault.content_type})
        if fault is not None and fault.kind not in ("truncate", "gzip"):
            answer = await self._apply_fault(request, fault, entry)
            if answer is not None:
                entry.status = answer.status
                return answer
        name = request.match_info["name"]
        generation_id = name.removesuffix(".mp4")
        entry.generation_id = generation_id
        with self._lock:
            known = generation_id in self._state.generations
        try:
            expires = float(request.query.get("expires", "0"))
        except ValueError:
            expires = 0.0
        if not known or not name.endswith(".mp4"):
            entry.status = 404
            return web.Response(status=404, text="no such file")
        if self.now() > expires:
            entry.status = 403
            return web.Response(status=403, text="this URL has expired")
        entry.status = 200
        return await self._stream_video(request, entry, truncate=fault is not None and fault.kind == "truncate")

    async def _stream_video(self, request: web.Request, entry: RecordedRequest, truncate: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = self.video_bytes
        await response.prepare(request)
        limit = self.video_bytes // 2 if truncate else self.video_bytes
        sent, chunk = 0, self._video * max(1, (256 * 1024) // len(self._video))
        while sent < limit:
            piece = chunk[: limit - sent]
            await response.write(piece)
            sent += len(piece)
        if truncate:
            entry.fault = "truncate"
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    # -- admin (command-line use) -----------------------------------------------------------------

    async def _admin_requests(self, request: web.Request) -> web.Response:
        return self._json([asdict(entry) for entry in self.requests])

    async def _admin_generations(self, request: web.Request) -> web.Response:
        return self._json(self.generations_summary())

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return self._json(self.stats())

    def generations_summary(self) -> list[dict[str, Any]]:
        """The created (billed) generations, oldest first, as ``GET /_emulator/generations`` lists them.

        Each: ``id``, ``family`` (``videos`` / ``starvideos``), ``model``, ``status`` now,
        ``created_at`` and ``done_at`` (emulator clock, unix seconds: when it reaches its outcome)
        and the ``timeline`` it follows.
        """
        now = self.now()
        return [
            {
                "id": g.id,
                "family": g.family,
                "model": g.model,
                "status": g.status(now),
                "created_at": g.created_at,
                "done_at": g.created_at + g.timeline.queued_for + g.timeline.processing_for,
                "timeline": asdict(g.timeline),
            }
            for g in self.generations
        ]

    def stats(self) -> dict[str, Any]:
        """Counts over the request log since the start (or the last reset), as ``GET /_emulator/stats`` gives them.

        - ``requests``: requests received per endpoint (``videos_create``, ``starvideos_create``,
          ``result``, ``download``); ``answers``: per HTTP status sent (``"none"``: no answer, the
          connection was dropped or the answer is still delayed); ``unauthorized``: requests refused with 401;
        - ``creates``: per family, create requests received and generations ``created`` (billed);
        - ``reads``: result reads per family of the id read (``unknown``: an id the emulator never created);
        - ``generations``: per generation id, its family, status now, result ``reads`` and ``downloads``;
        - ``faults``: faults served per kind and per endpoint, and how many are still ``pending``.
        """
        with self._lock:
            log = list(self._state.log)
            generations = dict(self._state.generations)
            pending = sum(f.times for f in self._state.faults if f.times > 0)
        now = self.now()
        families = ("videos", "starvideos")
        creates = {family: {"requests": 0, "created": 0} for family in families}
        reads: dict[str, int] = {family: 0 for family in (*families, "unknown")}
        per_generation: dict[str, dict[str, Any]] = {
            g.id: {"family": g.family, "status": g.status(now), "reads": 0, "downloads": 0}
            for g in generations.values()
        }
        for g in generations.values():
            creates[g.family]["created"] += 1
        requests: dict[str, int] = {endpoint: 0 for endpoint in ENDPOINTS}
        answers: dict[str, int] = {}
        faults_by_kind: dict[str, int] = {}
        faults_by_endpoint: dict[str, int] = {}
        for entry in log:
            requests[entry.endpoint] = requests.get(entry.endpoint, 0) + 1
            answer = "none" if entry.status is None else str(entry.status)
            answers[answer] = answers.get(answer, 0) + 1
            if entry.fault is not None:
                faults_by_kind[entry.fault] = faults_by_kind.get(entry.fault, 0) + 1
                faults_by_endpoint[entry.endpoint] = faults_by_endpoint.get(entry.endpoint, 0) + 1
            if entry.endpoint.endswith("_create"):
                creates[entry.endpoint.removesuffix("_create")]["requests"] += 1
                continue
            # The id named in the path, also for reads refused before it was looked up (401, faults).
            named = urlsplit(entry.path).path.rsplit("/", 1)[-1].removesuffix(".mp4")
            generation = generations.get(named)
            if entry.endpoint == "result":
                reads[generation.family if generation else "unknown"] += 1
            if generation is not None:
                per_generation[generation.id]["reads" if entry.endpoint == "result" else "downloads"] += 1
        return {
            "requests": requests,
            "answers": dict(sorted(answers.items())),
            "unauthorized": answers.get("401", 0),
            "creates": creates,
            "reads": reads,
            "generations": per_generation,
            "faults": {"served": faults_by_kind, "by_endpoint": faults_by_endpoint, "pending": pending},
        }

    async def _admin_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        try:
            params = await request.json() if request.can_read_body else {}
            return self._admin_apply(action, params)
        except (TypeError, ValueError, KeyError) as err:
            return self._json({"error": f"bad parameters for {action}: {err}"}, 400)

    def _admin_apply(self, action: str, params: dict[str, Any]) -> web.Response:
        if action == "reset":
            self.reset()
        elif action == "fault":
            self.add_fault(**params)
        elif action == "timeline":
            self.set_timeline(Timeline(**params))
        elif action == "queue-timeline":
            self.queue_timeline(Timeline(**params))
        elif action == "script-prompt":
            self.script_prompt(params.pop("marker"), Timeline(**params))
        elif action == "advance":
            self.advance(float(params["seconds"]))
        else:
            return self._json({"error": f"unknown action {action}"}, 404)
        return self._json({"ok": True})
