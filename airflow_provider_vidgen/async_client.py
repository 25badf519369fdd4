"""Asynchronous access to the result endpoint, for the trigger.

One ``aiohttp.ClientSession`` per event loop is shared by every trigger running on that loop: one
connection pool (at most :data:`POOL_SIZE` connections, kept alive), never a session per poll. The
session is closed when the last trigger using it finishes. Requests carry the key per request (the
pool is shared across connections), go only to the connection's base URL, and never follow
redirects, so the key cannot leak to another host.

Answers are read by :mod:`airflow_provider_vidgen.protocol`, exactly as the synchronous hook reads
them, and failures raise the same exception classes.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from airflow_provider_vidgen import protocol
from airflow_provider_vidgen.connection import USER_AGENT, ConnectionSettings
from airflow_provider_vidgen.exceptions import VidgenTransientError
from airflow_provider_vidgen.models import GenerationResult
from airflow_provider_vidgen.retry_policy import SendAgain

#: Most connections the shared pool opens to one host; further requests wait for a free one.
POOL_SIZE = 100
KEEPALIVE_SECONDS = 60.0
#: Shortest connect / read timeout of a request clipped to a wait's deadline (as ``VidgenHook``'s).
MIN_REQUEST_TIMEOUT = 1.0


@dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = weakref.WeakKeyDictionary()


def _new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE, keepalive_timeout=KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies; skip the jar's work on every answer
    )


@asynccontextmanager
async def shared_session() -> AsyncIterator[aiohttp.ClientSession]:
    """The running loop's shared session; closed when its last user leaves."""
    loop = asyncio.get_running_loop()
    shared = _sessions.get(loop)
    if shared is None or shared.session.closed:
        shared = _Shared(_new_session())
        _sessions[loop] = shared
    shared.users += 1
    try:
        yield shared.session
    finally:
        shared.users -= 1
        if shared.users == 0:
            if _sessions.get(loop) is shared:
                del _sessions[loop]
            await shared.session.close()


class ResultReader:
    """Reads one generation's result; everything that does not change between polls is built once.

    :param settings: The connection's settings (base URL, key, timeouts).
    :param generation_id: The generation to read.
    """

    def __init__(self, settings: ConnectionSettings, generation_id: str) -> None:
        self.settings = settings
        self.generation_id = generation_id
        path = protocol.result_path(generation_id)
        self.url = settings.base_url + path
        self.what = f"GET {path}"
        self.headers = {"Authorization": f"Bearer {settings.api_key}"}
        # Only the socket is bounded: opening it (sock_connect) and each read from it (sock_read, also
        # the wait for the answer's first bytes). No total and no "connect": aiohttp counts the wait
        # for a free pooled connection in both, and that is queueing, not a failure of the API.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=settings.connect_timeout, sock_read=settings.timeout
        )

    def _timeout_until(self, end_time: float | None) -> aiohttp.ClientTimeout:
        """The socket timeouts, clipped to the time left before ``end_time`` (at least
        :data:`MIN_REQUEST_TIMEOUT`), so one slow read does not run past the wait's deadline."""
        if end_time is None:
            return self.timeout
        left = max(MIN_REQUEST_TIMEOUT, end_time - time.time())
        if left >= self.settings.timeout and left >= self.settings.connect_timeout:
            return self.timeout
        return aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=min(self.settings.connect_timeout, left),
            sock_read=min(self.settings.timeout, left),
        )

    async def read(self, session: aiohttp.ClientSession, end_time: float | None = None) -> GenerationResult:
        """One read of the result endpoint (no retry: the caller's wait decides what comes next).

        :param session: The shared session.
        :param end_time: The wait's deadline (unix seconds): the socket timeouts are clipped to it.
        :raises SendAgain: a failure after which reading again may succeed (connection, timeout, 408,
            429, 5xx, malformed answer), as ``VidgenHook.get_result`` retries them.
        :raises VidgenError: the others, the same classes as ``VidgenHook.get_result``.
        """
        secret = self.settings.api_key
        try:
            async with session.get(
                self.url, headers=self.headers, timeout=self._timeout_until(end_time), allow_redirects=False
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = protocol.parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            reason = protocol.redact(str(exc), secret) or "no detail"
            raise SendAgain(f"{self.what}: {type(exc).__name__}: {reason}") from None
        body = raw.decode("utf-8", "replace")
        error = protocol.error_for_answer(status, body, self.what, secret, retry_after)
        try:
            if error is not None:
                raise error
            return protocol.parse_result(status, body, self.generation_id, secret, what=self.what)
        except VidgenTransientError as err:  # a read: sending it again is safe
            raise SendAgain(str(err), err.http_status, err.retry_after) from None
