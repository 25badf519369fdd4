"""When a create may be resent: failures classified by how far the request got, on loopback servers.

Real sockets on 127.0.0.1: a TLS server (self-signed certificate made here with ``cryptography``,
trusted through the hook session's ``verify``) whose connections are scripted one by one, and a raw
HTTP server for answers that no well-behaved server library would send.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from airflow_provider_vidgen.exceptions import (
    VidgenConfigError,
    VidgenCreateOutcomeUnknownError,
    VidgenRequestRejectedError,
    VidgenTransientError,
)
from airflow_provider_vidgen.hooks._transport import recording
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.testing import Emulator

VIDEOS = VideosRequest.build(model="videos", prompt="a cat in the grass", duration=5)
CREATED = json.dumps({"code": "0", "msg": None, "data": {"projectId": "proj_tls_1"}}).encode()
#: A fatal TLS alert (handshake_failure), the answer of a server that refuses the ClientHello.
HANDSHAKE_FAILURE_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
#: A TLS application-data record whose content is garbage: the client's MAC check fails on it.
CORRUPT_RECORD = bytes([0x17, 0x03, 0x03, 0x00, 0x40]) + bytes(range(0x40))


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def read_request(conn: socket.socket | ssl.SSLSocket) -> bytes:
    """One HTTP request (headers and ``Content-Length`` body) from ``conn``; ``b""`` if it closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@dataclass
class ScriptedServer:
    """A loopback server whose n-th connection behaves as ``script[n]`` (the last entry repeats).

    Behaviours: ``serve`` (TLS; answers the create), ``break`` (TLS; reads the whole request, then
    sends a corrupt TLS record and closes), ``alert`` (refuses the ClientHello with a fatal alert),
    ``stall`` (accepts TCP, never answers the ClientHello), ``raw:<bytes>`` (plain HTTP; reads the
    request and answers these bytes).
    """

    script: list[str]
    context: ssl.SSLContext | None = None
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            behaviour = self.script[min(self.connections, len(self.script) - 1)]
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._handle, args=(conn, behaviour), daemon=True).start()

    def _handle(self, conn: socket.socket, behaviour: str) -> None:
        try:
            if behaviour == "stall":
                self._stop.wait()  # hold the socket open; the client's handshake times out
                return
            if behaviour == "alert":
                conn.recv(65536)  # the ClientHello
                conn.sendall(HANDSHAKE_FAILURE_ALERT)
                return
            if behaviour.startswith("raw:"):
                if read_request(conn):
                    self.requests.append(b"")
                    conn.sendall(behaviour[4:].encode())
                return
            assert self.context is not None
            tls = self.context.wrap_socket(conn, server_side=True)
            request = read_request(tls)
            if not request:
                return
            self.requests.append(request)
            if behaviour == "break":
                # Written to the TCP socket under the TLS layer (wrap_socket detached ``conn``).
                with socket.socket(fileno=os.dup(tls.fileno())) as raw:
                    raw.sendall(CORRUPT_RECORD)
                tls.close()
                return
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(CREATED)}\r\n"
            tls.sendall(head.encode() + b"Connection: close\r\n\r\n" + CREATED)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        for conn in self._open:
            conn.close()
        self._thread.join(timeout=5)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path)


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[object]:
    servers: list[ScriptedServer] = []

    def start(*script: str) -> ScriptedServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls_files)
        server = ScriptedServer(list(script), context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def hook_for(
    monkeypatch: pytest.MonkeyPatch, url: str, cert: Path | None = None, *, max_retries: int = 3, **extra: float
) -> VidgenHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps(
            {
                "conn_type": "vidgen",
                "host": url,
                "password": "sk-transport-SECRET",
                "extra": {"max_retries": max_retries, "retry_base_delay": 0.01, "retry_max_delay": 0.02, **extra},
            }
        ),
    )
    hook = VidgenHook()
    if cert is not None:
        # requests lets these variables win over the session's ``verify``: trust only the test's certificate.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        hook.get_conn().verify = str(cert)
    return hook


def test_the_tls_server_serves_a_create(tls_server, tls_files, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = tls_server("serve")
    hook = hook_for(monkeypatch, f"https://127.0.0.1:{server.port}", tls_files[0])
    assert hook.create(VIDEOS) == "proj_tls_1"
    assert len(server.requests) == 1


def test_tls_stream_broken_after_the_request_is_an_unknown_outcome(  # type: ignore[no-untyped-def]
    tls_server, tls_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tls_server("break", "serve")
    hook = hook_for(monkeypatch, f"https://127.0.0.1:{server.port}", tls_files[0])
    with pytest.raises(VidgenCreateOutcomeUnknownError, match=r"SSLError.*outcome is unknown") as info:
        hook.create(VIDEOS)
    assert len(server.requests) == 1  # the server read (and may have acted on) exactly one create
    assert b"POST /v1/videos/videos" in server.requests[0]
    assert "sk-transport-SECRET" not in str(info.value)


def test_tls_handshake_refused_before_any_byte_is_retried(  # type: ignore[no-untyped-def]
    tls_server, tls_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tls_server("alert", "alert", "serve")
    hook = hook_for(monkeypatch, f"https://127.0.0.1:{server.port}", tls_files[0])
    assert hook.create(VIDEOS) == "proj_tls_1"
    assert server.connections == 3
    assert len(server.requests) == 1


def test_tls_handshake_refused_every_time_gives_up_as_transient(  # type: ignore[no-untyped-def]
    tls_server, tls_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tls_server("alert")
    hook = hook_for(monkeypatch, f"https://127.0.0.1:{server.port}", tls_files[0], max_retries=2)
    with pytest.raises(VidgenTransientError, match=r"nothing was sent.*gave up after 3 attempts"):
        hook.create(VIDEOS)
    assert server.connections == 3
    assert server.requests == []


def test_stalled_tls_handshake_is_known_unsent_and_retried(  # type: ignore[no-untyped-def]
    tls_server, tls_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    # urllib3 reports a handshake that times out as a ReadTimeout: the request was never written.
    server = tls_server("stall", "serve")
    hook = hook_for(monkeypatch, f"https://127.0.0.1:{server.port}", tls_files[0], connect_timeout=0.3)
    assert hook.create(VIDEOS) == "proj_tls_1"
    assert server.connections == 2
    assert len(server.requests) == 1


def test_stalled_tls_handshake_error_says_nothing_was_sent(  # type: ignore[no-untyped-def]
    tls_server, tls_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tls_server("stall")
    hook = hook_for(monkeypatch, f"https://127.0.0.1:{server.port}", tls_files[0], max_retries=0, connect_timeout=0.3)
    with pytest.raises(VidgenTransientError, match=r"ReadTimeout.*during the TLS handshake: nothing was sent") as info:
        hook.create(VIDEOS)
    assert not isinstance(info.value, VidgenCreateOutcomeUnknownError)
    assert server.requests == []


def test_conflicting_content_length_in_a_create_answer_is_an_unknown_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}"
    server = ScriptedServer([f"raw:{answer}"])
    try:
        hook = hook_for(monkeypatch, f"http://127.0.0.1:{server.port}")
        with pytest.raises(VidgenCreateOutcomeUnknownError, match=r"InvalidHeader.*outcome is unknown"):
            hook.create(VIDEOS)
        assert len(server.requests) == 1
    finally:
        server.close()


def test_conflicting_content_length_in_a_read_answer_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}"
    server = ScriptedServer([f"raw:{answer}"])
    try:
        hook = hook_for(monkeypatch, f"http://127.0.0.1:{server.port}", max_retries=1)
        with pytest.raises(VidgenTransientError, match=r"InvalidHeader.*gave up after 2 attempts"):
            hook.get_result("proj_1")
        assert len(server.requests) == 2
    finally:
        server.close()


def test_a_header_the_client_refuses_before_sending_is_a_config_error(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = VidgenHook()
    hook.get_conn().headers["X-Bad"] = "two\nlines"
    with pytest.raises(VidgenConfigError, match="could not be built"):
        hook.create(VIDEOS)
    assert emulator_conn.requests == []


def test_https_to_a_plain_http_host_says_to_use_http(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Base URL without a scheme gets https://; the emulator speaks plain HTTP.
    hook = hook_for(monkeypatch, f"127.0.0.1:{emulator_conn.port}/kyyReactApiServer")
    with pytest.raises(VidgenConfigError, match=r"speaks plain HTTP.*use http:// for a loopback host"):
        hook.create(VIDEOS)
    assert emulator_conn.requests == []
    ok, message = hook.test_connection()
    assert not ok
    assert "use http://" in message


def test_a_create_never_goes_out_on_a_kept_alive_connection(emulator_conn: Emulator) -> None:
    # A pooled connection the server closed meanwhile would swallow the request's bytes; creates open
    # a fresh one. Reads keep using the pool.
    hook = VidgenHook()
    generation_id = hook.create(VIDEOS)
    hook.get_result(generation_id)
    hook.get_result(generation_id)
    hook.create(VIDEOS)
    hook.get_result(generation_id)
    peers = [r.peer for r in emulator_conn.requests]
    assert [r.endpoint for r in emulator_conn.requests] == [
        "videos_create",
        "result",
        "result",
        "videos_create",
        "result",
    ]
    assert len(emulator_conn.connections()) == 2
    first, second = peers[0], peers[3]
    assert first != second
    assert peers == [first, first, first, second, second]


def test_a_create_through_an_http_proxy_is_still_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy (a raw loopback server) reads the forwarded create and answers a malformed header:
    # the request went out through the proxy's recording connection, so the outcome is unknown.
    answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}"
    proxy = ScriptedServer([f"raw:{answer}"])
    try:
        hook = hook_for(monkeypatch, "http://127.0.0.1:9")  # never reached directly: the proxy answers
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        hook.get_conn().proxies = {"http": f"http://127.0.0.1:{proxy.port}"}
        with pytest.raises(VidgenCreateOutcomeUnknownError, match="InvalidHeader"):
            hook.create(VIDEOS)
        assert len(proxy.requests) == 1
        with recording() as record, pytest.raises(requests.exceptions.InvalidHeader):
            hook.get_conn().get("http://127.0.0.1:9/v1/result/p", timeout=5)
        assert (record.instrumented, record.connected, record.bytes_sent) == (True, True, True)
        assert len(proxy.requests) == 2
    finally:
        proxy.close()


def test_failures_the_transport_did_not_record_fall_back_to_the_exception_class(emulator_conn: Emulator) -> None:
    # E.g. a request through a SOCKS proxy: its connections are not the recording ones.
    import urllib3

    from airflow_provider_vidgen.hooks._transport import SendRecord

    hook = VidgenHook()
    what = "POST /v1/videos/videos"
    unrecorded = SendRecord(dispatched=True)
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    )
    for exc in (requests.exceptions.ConnectTimeout("connect timed out"), refused):
        error = hook._transport_error(exc, unrecorded, what, create=True)
        assert isinstance(error, VidgenTransientError)
        assert not isinstance(error, VidgenCreateOutcomeUnknownError)
    for exc in (
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.SSLError("bad record mac"),
        requests.exceptions.InvalidHeader("Content-Length contained multiple unmatching values"),
    ):
        assert isinstance(hook._transport_error(exc, unrecorded, what, create=True), VidgenCreateOutcomeUnknownError)
    # Raised while the request was being built, before the transport: a configuration problem.
    assert isinstance(hook._transport_error(ValueError("bad"), SendRecord(), what, create=True), VidgenConfigError)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_create_answered_with_a_redirect_is_an_unknown_outcome(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    # A server may answer a POST it has processed with 303 (or 302, POST-redirect-GET).
    answer = f"HTTP/1.1 {status} See Other\r\nLocation: /v1/result/proj_9\r\nContent-Length: 0\r\n\r\n"
    server = ScriptedServer([f"raw:{answer}"])
    try:
        hook = hook_for(monkeypatch, f"http://127.0.0.1:{server.port}")
        with pytest.raises(VidgenCreateOutcomeUnknownError, match=rf"HTTP {status} redirect.*outcome is unknown"):
            hook.create(VIDEOS)
        assert len(server.requests) == 1
        with pytest.raises(VidgenRequestRejectedError, match=rf"HTTP {status} redirect"):
            hook.get_result("proj_1")  # a read is just refused: redirects are never followed
    finally:
        server.close()


def test_an_unexpected_error_reading_a_create_answer_is_an_unknown_outcome(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from airflow_provider_vidgen import families

    def broken(status: int, body: str, secret: str | None) -> str:
        raise KeyError("projectId")

    videos = dataclasses.replace(families.VIDEOS, parse_create=broken)
    monkeypatch.setattr(families, "FAMILIES", tuple(videos if f is families.VIDEOS else f for f in families.FAMILIES))
    with pytest.raises(VidgenCreateOutcomeUnknownError, match=r"KeyError while reading the answer"):
        VidgenHook().create(VIDEOS)
    assert len(emulator_conn.generations) == 1


def test_a_ca_bundle_that_does_not_exist_is_a_config_error_not_an_unknown_outcome(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # requests refuses the request before opening any connection: nothing can have been billed.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing-ca.pem"))
    hook = hook_for(monkeypatch, f"https://127.0.0.1:{emulator_conn.port}")
    with pytest.raises(VidgenConfigError, match="nothing was sent; check the CA bundle") as info:
        hook.create(VIDEOS)
    assert "outcome is unknown" not in str(info.value)
    assert emulator_conn.requests == []


def test_a_proxy_url_requests_cannot_parse_is_a_config_error_that_quotes_no_credentials(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://user:proxy-s3cret@[bad")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    hook = VidgenHook()
    with pytest.raises(VidgenConfigError, match="nothing was sent") as info:
        hook.create(VIDEOS)
    assert "outcome is unknown" not in str(info.value)
    assert "proxy-s3cret" not in str(info.value)
    assert emulator_conn.requests == []
