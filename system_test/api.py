"""The bundled emulator, run by the system test with what the chaos needs on top.

- fixed ports and an API listener that can be closed and reopened (an outage: connections refused);
- a second key, accepted only for the HTTP-provider baseline, so a leak of the provider's key is
  told apart from the baseline's own (which puts its key in request headers);
- "holds" aimed at one Celery worker's process tree: its next creates are answered only after a long
  delay (the generation exists, the client has no id yet), and the first status read of its next
  generations too (the id is recorded, the task has not deferred yet). The worker is then killed
  while those requests hang.

The wire format is the emulator's own; a hold only delays an answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from aiohttp import web

from airflow_provider_vidgen.testing.emulator import BASE_PATH, Emulator, RecordedRequest
from system_test.cluster import descendants, socket_owner


class SystemEmulator(Emulator):
    def __init__(self, *, baseline_key: str, hold_seconds: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.baseline_key = baseline_key
        self.hold_seconds = hold_seconds
        self._api_runner: web.AppRunner | None = None
        self._hold_lock = threading.Lock()
        self._hold_root: int | None = None
        self._hold_creates = 0
        self._hold_reads = 0
        self._hold_first_read: set[str] = set()
        self._released = threading.Event()
        #: Requests held so far: {"kind": "create" | "first_read", "generation_id", "pid", "time"}.
        self.held: list[dict[str, Any]] = []

    # -- listeners ------------------------------------------------------------------------------

    def _api_app(self) -> web.Application:
        api = web.Application(client_max_size=8 * 1024 * 1024)
        api.router.add_post(BASE_PATH + "/v1/videos/videos", self._videos_create)
        api.router.add_post(BASE_PATH + "/v1/starvideos/videos", self._starvideos_create)
        api.router.add_get(BASE_PATH + "/v1/result/{id}", self._result)
        api.router.add_get("/_emulator/requests", self._admin_requests)
        api.router.add_get("/_emulator/generations", self._admin_generations)
        api.router.add_post("/_emulator/{action}", self._admin_action)
        return api

    async def start_async(self) -> None:
        await super().start_async()
        # super() started the API listener first: keep it apart so an outage can close it alone.
        self._api_runner = self._runners.pop(0)
        self._port = self.port

    async def stop_async(self) -> None:
        if self._api_runner is not None:
            await self._api_runner.cleanup()
            self._api_runner = None
        await super().stop_async()

    async def _hold(self) -> None:
        deadline = time.monotonic() + self.hold_seconds
        while time.monotonic() < deadline and not self._released.is_set():
            await asyncio.sleep(0.2)

    async def _close_api(self) -> None:
        if self._api_runner is not None:
            self._api_runner._shutdown_timeout = 1.0  # refuse at once; do not wait for open requests
            await self._api_runner.cleanup()
            self._api_runner = None

    async def _open_api(self) -> None:
        runner = web.AppRunner(self._api_app(), access_log=None, keepalive_timeout=75.0)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, backlog=4096).start()
        self._api_runner = runner

    def _on_loop(self, coro: Any) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def close_api(self) -> None:
        """Close the API listener (and its open connections): clients get 'connection refused'."""
        self._on_loop(self._close_api())

    def open_api(self) -> None:
        """Listen on the same API port again."""
        self._on_loop(self._open_api())

    # -- keys -----------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") in (f"Bearer {self.api_key}", f"Bearer {self.baseline_key}")

    # -- holds ----------------------------------------------------------------------------------

    def arm_holds(self, root_pid: int, creates: int, first_reads: int) -> None:
        """Hold the next ``creates`` creates and the first read of the next ``first_reads``
        generations created by processes under ``root_pid``."""
        with self._hold_lock:
            self._hold_root, self._hold_creates, self._hold_reads = root_pid, creates, first_reads
            self._released.clear()

    def disarm_holds(self) -> None:
        """Stop holding; requests still held are answered now (their clients are gone)."""
        self._released.set()
        with self._hold_lock:
            self._hold_root, self._hold_creates, self._hold_reads = None, 0, 0
            self._hold_first_read.clear()

    def _peer_pid(self, request: web.Request) -> int | None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return socket_owner(int(peer[1])) if peer else None

    async def _dispatch(
        self, request: web.Request, endpoint: str, body: Any, entry: RecordedRequest
    ) -> web.StreamResponse:
        kind = None
        with self._hold_lock:
            root = self._hold_root
            want = root is not None and (
                (endpoint != "result" and (self._hold_creates or self._hold_reads))
                or (endpoint == "result" and request.match_info.get("id") in self._hold_first_read)
            )
        pid = None
        if want and endpoint != "result":
            pid = await asyncio.get_running_loop().run_in_executor(None, self._peer_pid, request)
            with self._hold_lock:
                if root is not None and pid is not None and pid in descendants(root):
                    if self._hold_creates > 0:
                        self._hold_creates -= 1
                        kind = "create"
                    elif self._hold_reads > 0:
                        self._hold_reads -= 1
                        kind = "read_next"
        elif want:
            with self._hold_lock:
                self._hold_first_read.discard(request.match_info["id"])
            kind = "first_read"
        if kind is None:
            return await super()._dispatch(request, endpoint, body, entry)
        if kind == "first_read":
            entry.fault = "held"
            self.held.append({"kind": kind, "generation_id": request.match_info["id"], "time": time.time()})
            await self._hold()
            return await super()._dispatch(request, endpoint, body, entry)
        response = await super()._dispatch(request, endpoint, body, entry)
        if kind == "read_next":
            if entry.generation_id:
                with self._hold_lock:
                    self._hold_first_read.add(entry.generation_id)
            return response
        entry.fault = "held"
        self.held.append({"kind": kind, "generation_id": entry.generation_id, "pid": pid, "time": time.time()})
        await self._hold()
        return response
