"""A ``requests`` transport that records, per request, how far the request got.

A create is billed, so after a failure the hook must know whether any byte of the request left
this process. Exception classes do not say it (urllib3 raises ``SSLError`` both for a failed
handshake and for a TLS stream broken while the answer is read, and ``ReadTimeout`` both for a
stalled handshake and for a server that does not answer). The connection classes below note
when a connection is opened and when the first byte of the request is handed to the socket; the
hook reads that :class:`SendRecord` to classify the failure by *when* it happened.

Imported when the hook first talks to the API (it imports ``requests`` and ``urllib3``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection


@dataclass
class SendRecord:
    """How far one request got before it ended (normally or with an exception).

    :param dispatched: The request was built and handed to the transport (errors before that are the
        client refusing to build it).
    :param instrumented: The request went through one of the recording connections below (when it
        did not, e.g. through a SOCKS proxy, the other fields say nothing).
    :param connecting: Opening a connection (TCP, then the TLS handshake) was started.
    :param connected: The connection was established (and the TLS handshake completed).
    :param reused: The request went out on a kept-alive connection from the pool.
    :param bytes_sent: The first byte of the request was handed to the socket: from then on the
        server may have received (and acted on) the request.
    :param refused: The transport refused the request before choosing or opening any connection,
        naming the step: ``"connection"`` (a proxy or URL it cannot parse, a proxy scheme it cannot
        use) or ``"cert_verify"`` (a CA bundle or client certificate it cannot find). Nothing was sent.
    """

    dispatched: bool = False
    instrumented: bool = False
    connecting: bool = False
    connected: bool = False
    reused: bool = False
    bytes_sent: bool = False
    refused: str | None = None


_local = threading.local()


def _current() -> SendRecord | None:
    return getattr(_local, "record", None)


@contextmanager
def recording() -> Iterator[SendRecord]:
    """Record what the requests sent by this thread inside the block do (one request per block)."""
    record = SendRecord()
    previous = _current()
    _local.record = record
    try:
        yield record
    finally:
        _local.record = previous


def _connect(conn: Any, connect: Any) -> None:
    record = _current()
    if record is None:
        connect()
        return
    record.instrumented = True
    record.connecting = True
    conn._vidgen_in_connect = True  # a proxy's CONNECT line is not the request
    try:
        connect()
    finally:
        conn._vidgen_in_connect = False
    record.connected = True


def _before_send(conn: Any) -> None:
    record = _current()
    if record is None or getattr(conn, "_vidgen_in_connect", False):
        return
    record.instrumented = True
    if conn.sock is None:
        conn.connect()  # http.client would open it inside send(); open it here so it is recorded
    elif not record.connected:
        record.reused = True
    record.bytes_sent = True


class RecordingHTTPConnection(HTTPConnection):
    """urllib3's connection, noting in the thread's :class:`SendRecord` when it connects and sends."""

    def connect(self) -> None:
        _connect(self, super().connect)

    def send(self, data: Any) -> None:
        _before_send(self)
        super().send(data)


class RecordingHTTPSConnection(HTTPSConnection):
    """The TLS variant of :class:`RecordingHTTPConnection`."""

    def connect(self) -> None:
        _connect(self, super().connect)

    def send(self, data: Any) -> None:
        _before_send(self)
        super().send(data)


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = RecordingHTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = RecordingHTTPSConnection


_POOL_CLASSES: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": _HTTPConnectionPool,
    "https": _HTTPSConnectionPool,
}


@contextmanager
def _refusing(step: str) -> Iterator[None]:
    """Note in the thread's :class:`SendRecord` that ``step`` refused the request, if it raises."""
    try:
        yield
    except BaseException:
        record = _current()
        if record is not None and not (record.connecting or record.bytes_sent):
            record.refused = step
        raise


class RecordingAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections fill the thread's :class:`SendRecord`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOL_CLASSES)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        record = _current()
        if record is not None:
            record.dispatched = True
        return super().send(request, *args, **kwargs)

    # The steps of ``HTTPAdapter.send`` before any connection is used: an error raised by one of them
    # proves that nothing was sent (a broken proxy URL, a CA bundle path that does not exist).

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        with _refusing("connection"):
            return super().get_connection_with_tls_context(*args, **kwargs)

    def cert_verify(self, *args: Any, **kwargs: Any) -> None:
        with _refusing("cert_verify"):
            super().cert_verify(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # an HTTP(S) proxy; a SOCKS proxy is not recorded
            manager.pool_classes_by_scheme = dict(_POOL_CLASSES)
        return manager

    def drop_idle_connections(self) -> None:
        """Close the kept-alive connections, so the next request opens a fresh one."""
        self.poolmanager.clear()


__all__ = ["RecordingAdapter", "SendRecord", "recording"]
