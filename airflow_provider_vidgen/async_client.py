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
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from airflow_provider_vidgen import protocol
from airflow_provider_vidgen.connection import USER_AGENT, ConnectionSettings
from airflow_provider_vidgen.exceptions import VidgenTransientError
from airflow_provider_vidgen.models import GenerationResult

#: Most connections the shared pool opens to one host; further requests wait for a free one.
POOL_SIZE = 100
KEEPALIVE_SECONDS = 60.0


@dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = weakref.WeakKeyDictionary()


def _new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE, keepalive_timeout=KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})


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


async def fetch_result(
    session: aiohttp.ClientSession, settings: ConnectionSettings, generation_id: str
) -> GenerationResult:
    """One read of the result endpoint (no retry: the caller's wait decides what comes next).

    :param session: The shared session.
    :param settings: The connection's settings (base URL, key, timeouts).
    :param generation_id: The generation to read.
    :raises VidgenError: the same classes as ``VidgenHook.get_result``.
    """
    path = protocol.result_path(generation_id)
    what = f"GET {path}"
    timeout = aiohttp.ClientTimeout(total=settings.timeout + settings.connect_timeout, connect=settings.connect_timeout)
    try:
        async with session.get(
            settings.base_url + path,
            headers={"Authorization": f"Bearer {settings.api_key}"},
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            body = await response.text()
            status = response.status
            retry_after = protocol.parse_retry_after(response.headers.get("Retry-After"))
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        reason = protocol.redact(str(exc), settings.api_key) or "no detail"
        raise VidgenTransientError(f"{what}: {type(exc).__name__}: {reason}") from None
    if 300 <= status < 400:
        raise protocol.error_for_redirect(status, what)
    if status >= 400:
        raise protocol.error_for_status(status, body, what, settings.api_key, retry_after)
    return protocol.parse_result(status, body, generation_id, settings.api_key)
