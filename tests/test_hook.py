"""VidgenHook against the emulator on loopback: wire format, errors, retry policy, secrets."""

from __future__ import annotations

import json
import socket

import pytest

from airflow_provider_vidgen import __version__, protocol
from airflow_provider_vidgen.exceptions import (
    VidgenAPIError,
    VidgenAuthError,
    VidgenConfigError,
    VidgenCreateOutcomeUnknownError,
    VidgenGenerationFailedError,
    VidgenNotFoundError,
    VidgenRequestRejectedError,
    VidgenTransientError,
)
from airflow_provider_vidgen.hooks.vidgen import PROBE_GENERATION_ID, VidgenHook
from airflow_provider_vidgen.models import StarVideosRequest, VideosRequest
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from tests.conftest import conn_json

VIDEOS = VideosRequest.build(model="videos", prompt="a cat in the grass", duration=5)
STAR = StarVideosRequest.build(model="starvideos_v3", prompt="a cyberpunk city", duration=5, ratio="16:9")


@pytest.fixture
def hook(emulator_conn: Emulator) -> VidgenHook:
    return VidgenHook()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- wire format ------------------------------------------------------------------------------------


def test_videos_create_sends_documented_body_and_headers(hook: VidgenHook, emulator_conn: Emulator) -> None:
    request = VideosRequest.build(
        model="videos_fast",
        prompt="a kitten",
        duration=6,
        ratio="9:16",
        image="https://img/first.png",
        last_frame_image="https://img/last.png",
    )
    generation_id = hook.create(request)
    (sent,) = emulator_conn.creates()
    assert sent.path == "/kyyReactApiServer/v1/videos/videos"
    assert sent.body == {
        "model": "videos_fast",
        "prompt": "a kitten",
        "duration": 6,
        "ratio": "9:16",
        "image": "https://img/first.png",
        "lastFrameImage": "https://img/last.png",
    }
    assert sent.authorization == f"Bearer {emulator_conn.api_key}"
    assert sent.generation_id == generation_id
    assert generation_id.startswith("proj_")


def test_reference_material_wire_names(hook: VidgenHook, emulator_conn: Emulator) -> None:
    hook.create(
        VideosRequest.build(
            model="videos",
            prompt="p",
            duration=4,
            reference_images=["https://i/1"],
            reference_videos=["https://v/1"],
        )
    )
    assert emulator_conn.creates()[0].body == {
        "model": "videos",
        "prompt": "p",
        "duration": 4,
        "referenceImages": ["https://i/1"],
        "referenceVideos": ["https://v/1"],
    }


def test_starvideos_create_and_result(hook: VidgenHook, emulator_conn: Emulator) -> None:
    request = StarVideosRequest.build(model="starvideos_v3", prompt="x", images=["https://a/1", "https://a/2"])
    generation_id = hook.create(request)
    (sent,) = emulator_conn.creates()
    assert sent.path == "/kyyReactApiServer/v1/starvideos/videos"
    assert sent.body == {"model": "starvideos_v3", "prompt": "x", "images": ["https://a/1", "https://a/2"]}
    assert hook.get_result(generation_id).status == "queued"
    emulator_conn.advance(60)
    result = hook.get_result(generation_id)
    assert result.is_completed
    assert result.video_url
    assert result.video_url.startswith(emulator_conn.download_base_url)


def test_result_of_failed_generation(hook: VidgenHook, emulator_conn: Emulator) -> None:
    emulator_conn.queue_timeline(Timeline(queued_for=0, processing_for=0, outcome="failed", error="policy"))
    result = hook.get_result(hook.create(VIDEOS))
    assert result.is_failed
    assert result.error == "policy"


def test_user_agent_and_keep_alive(hook: VidgenHook, emulator_conn: Emulator) -> None:
    generation_id = hook.create(VIDEOS)
    for _ in range(5):
        hook.get_result(generation_id)
    assert len(emulator_conn.connections()) == 1  # one session, one kept-alive connection
    assert {r.user_agent for r in emulator_conn.requests} == {f"airflow-provider-vidgen/{__version__}"}


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(protocol.CREATE_REFUSED_CODES))
def test_envelope_error_with_a_refusal_code_raises_with_msg(
    hook: VidgenHook, emulator_conn: Emulator, code: str
) -> None:
    emulator_conn.add_fault(Fault(kind="envelope", endpoint="videos_create", code=code, msg="insufficient balance"))
    with pytest.raises(VidgenAPIError, match="insufficient balance") as info:
        hook.create(VIDEOS)
    assert info.value.api_code == code
    assert len(emulator_conn.creates()) == 1
    assert emulator_conn.generations == []


@pytest.mark.parametrize("code", ["1001", "500", "503", "E_QUOTA", "-1"])
@pytest.mark.parametrize("endpoint", ["videos_create", "starvideos_create"])
def test_envelope_error_with_any_other_code_is_an_unknown_outcome(
    hook: VidgenHook, emulator_conn: Emulator, code: str, endpoint: str
) -> None:
    # The API does not document whether a task can exist behind an error envelope: only the codes
    # that mean a refusal prove that nothing was created; any other code is never resent.
    emulator_conn.add_fault(Fault(kind="envelope", endpoint=endpoint, code=code, msg="insufficient balance"))
    with pytest.raises(VidgenCreateOutcomeUnknownError, match=r"insufficient balance.*outcome is unknown"):
        hook.create(VIDEOS if endpoint == "videos_create" else STAR)
    assert len(emulator_conn.creates()) == 1


def test_server_side_validation_answer_is_rejected_not_retried(hook: VidgenHook, emulator_conn: Emulator) -> None:
    # Bypass client validation to see the server's 400 envelope handled as a rejection.
    bad = VideosRequest.model_construct(model="videos", prompt="x", duration=99)
    with pytest.raises(VidgenRequestRejectedError, match=r"HTTP 400.*duration"):
        hook.create(bad)
    assert len(emulator_conn.creates()) == 1


def test_bad_key_is_an_auth_error_not_retried(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps({"conn_type": "vidgen", "host": emulator_conn.base_url, "password": "sk-wrong-key"}),
    )
    hook = VidgenHook()
    with pytest.raises(VidgenAuthError, match="API key was rejected") as info:
        hook.get_result("proj_1")
    assert "sk-wrong-key" not in str(info.value)
    assert len(emulator_conn.requests) == 1


def test_unknown_id_is_not_found(hook: VidgenHook, emulator_conn: Emulator) -> None:
    with pytest.raises(VidgenNotFoundError, match="HTTP 404"):
        hook.get_result("proj_missing")
    assert len(emulator_conn.requests) == 1


def test_missing_key_names_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_X", json.dumps({"conn_type": "vidgen", "host": "https://api.example"}))
    with pytest.raises(VidgenConfigError, match="vidgen_x"):
        VidgenHook("vidgen_x").get_result("p")


def test_plain_http_to_remote_host_refused_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_X",
        json.dumps({"conn_type": "vidgen", "host": "http://api.example.com", "password": "sk"}),
    )
    with pytest.raises(VidgenConfigError, match="clear text"):
        VidgenHook("vidgen_x").create(VIDEOS)


# -- retry policy: reads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, endpoint="result", times=2),
        Fault(kind="status", status=500, endpoint="result", times=2),
        Fault(kind="status", status=429, retry_after="0", endpoint="result", times=2),
        Fault(kind="drop", endpoint="result", times=2),
        Fault(kind="malformed", endpoint="result", times=2),
    ],
    ids=["503", "500", "429", "dropped", "malformed"],
)
def test_result_retried_after_transient_faults(hook: VidgenHook, emulator_conn: Emulator, fault: Fault) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=600))  # still queued however slowly the retries run
    generation_id = hook.create(VIDEOS)
    emulator_conn.add_fault(fault)
    assert hook.get_result(generation_id).status == "queued"
    assert len(emulator_conn.requests_to("result")) == 3


def test_result_retried_after_read_timeout(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, timeout=0.2))
    hook = VidgenHook()
    emulator_conn.set_timeline(Timeline(queued_for=600))  # still queued however slowly the retry runs
    generation_id = hook.create(VIDEOS)
    emulator_conn.add_fault(Fault(kind="delay", delay=1.0, endpoint="result"))
    assert hook.get_result(generation_id).status == "queued"
    assert len(emulator_conn.requests_to("result")) == 2


def test_retry_after_is_honoured(hook: VidgenHook, emulator_conn: Emulator) -> None:
    generation_id = hook.create(VIDEOS)
    emulator_conn.add_fault(Fault(kind="status", status=429, retry_after="1", endpoint="result"))
    hook.get_result(generation_id)
    first, second = emulator_conn.requests_to("result")
    assert second.time - first.time >= 0.95  # the base delay is 0.01 s: only Retry-After explains this


def test_result_gives_up_after_max_retries(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=2))
    hook = VidgenHook()
    emulator_conn.add_fault(Fault(kind="status", status=502, endpoint="result", times=10))
    with pytest.raises(VidgenTransientError, match=r"HTTP 502.*gave up after 3 attempts"):
        hook.get_result("proj_1")
    assert len(emulator_conn.requests_to("result")) == 3


def test_connection_refused_retried_then_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps(
            {
                "conn_type": "vidgen",
                "host": f"http://127.0.0.1:{port}/base",
                "password": "sk-refused-key",
                "extra": {"max_retries": 1, "retry_base_delay": 0.01},
            }
        ),
    )
    with pytest.raises(VidgenTransientError, match="gave up after 2 attempts") as info:
        VidgenHook().get_result("p")
    assert "sk-refused-key" not in str(info.value)


# -- retry policy: creates (billed) ------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 408])
def test_create_retried_after_429_or_408_which_create_nothing(
    hook: VidgenHook, emulator_conn: Emulator, status: int
) -> None:
    emulator_conn.add_fault(Fault(kind="status", status=status, retry_after="0", endpoint="create", times=2))
    generation_id = hook.create(VIDEOS)
    assert len(emulator_conn.creates()) == 3
    assert [g.id for g in emulator_conn.generations] == [generation_id]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_never_retried_after_5xx(hook: VidgenHook, emulator_conn: Emulator, status: int) -> None:
    emulator_conn.add_fault(Fault(kind="status", status=status, endpoint="create"))
    with pytest.raises(VidgenCreateOutcomeUnknownError, match="outcome is unknown") as info:
        hook.create(STAR)
    assert "Check" in str(info.value)
    assert len(emulator_conn.creates()) == 1


def test_create_never_retried_after_read_timeout(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, timeout=0.3))
    emulator_conn.add_fault(Fault(kind="delay", delay=1.5, endpoint="create", after_create=True))
    with pytest.raises(VidgenCreateOutcomeUnknownError, match="ReadTimeout"):
        VidgenHook().create(VIDEOS)
    assert len(emulator_conn.creates()) == 1
    assert len(emulator_conn.generations) == 1  # it was created (and billed): resending would bill twice


def test_create_never_retried_after_dropped_connection(hook: VidgenHook, emulator_conn: Emulator) -> None:
    emulator_conn.add_fault(Fault(kind="drop", endpoint="create", after_create=True))
    with pytest.raises(VidgenCreateOutcomeUnknownError):
        hook.create(VIDEOS)
    assert len(emulator_conn.creates()) == 1
    assert len(emulator_conn.generations) == 1


def test_create_retried_when_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps(
            {
                "conn_type": "vidgen",
                "host": f"http://127.0.0.1:{port}",
                "password": "k",
                "extra": {"max_retries": 2, "retry_base_delay": 0.01},
            }
        ),
    )
    with pytest.raises(VidgenTransientError, match=r"ConnectionError.*gave up after 3 attempts"):
        VidgenHook().create(VIDEOS)


def test_create_retried_after_refusal_then_succeeds() -> None:
    # Connection refused on the first attempt, then the server is up: one task, no duplicate.
    port = free_port()
    emulator = Emulator(port=port)
    hook_conn = json.dumps(
        {
            "conn_type": "vidgen",
            "host": f"http://127.0.0.1:{port}/kyyReactApiServer",
            "password": emulator.api_key,
            "extra": {"max_retries": 3, "retry_base_delay": 0.01},
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", hook_conn)
        hook = VidgenHook()
        attempts = []

        def start_after_first_attempt(method: str, url: str, **kwargs):  # type: ignore[no-untyped-def]
            attempts.append(url)
            if len(attempts) == 2:
                emulator.start()
            return original(method, url, **kwargs)

        original = hook.get_conn().request
        mp.setattr(hook.get_conn(), "request", start_after_first_attempt)
        try:
            generation_id = hook.create(VIDEOS)
        finally:
            emulator.stop()
    assert len(attempts) == 2
    assert [g.id for g in emulator.generations] == [generation_id]


# -- test_connection ----------------------------------------------------------------------------------


def test_test_connection_ok_never_creates(hook: VidgenHook, emulator_conn: Emulator) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert "key not rejected" in message
    assert emulator_conn.creates() == []
    assert [r.path for r in emulator_conn.requests] == [f"/kyyReactApiServer/v1/result/{PROBE_GENERATION_ID}"]


def test_test_connection_bad_key(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps({"conn_type": "vidgen", "host": emulator_conn.base_url, "password": "sk-bad"}),
    )
    ok, message = VidgenHook().test_connection()
    assert not ok
    assert "rejected" in message
    assert "sk-bad" not in message


def test_test_connection_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps(
            {
                "conn_type": "vidgen",
                "host": f"http://127.0.0.1:{free_port()}",
                "password": "sk-unreachable",
                "extra": {"max_retries": 0},
            }
        ),
    )
    ok, message = VidgenHook().test_connection()
    assert not ok
    assert "sk-unreachable" not in message


def test_ui_field_behaviour() -> None:
    behaviour = VidgenHook.get_ui_field_behaviour()
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert "https" in behaviour["placeholders"]["host"]
    assert "production" in behaviour["placeholders"]["host"]


def test_create_with_unreadable_2xx_answer_is_an_unknown_outcome(hook: VidgenHook, emulator_conn: Emulator) -> None:
    emulator_conn.add_fault(Fault(kind="malformed", endpoint="create", after_create=True))
    with pytest.raises(VidgenCreateOutcomeUnknownError, match="outcome is unknown"):
        hook.create(VIDEOS)
    assert len(emulator_conn.creates()) == 1


def test_403_is_an_auth_error(hook: VidgenHook, emulator_conn: Emulator) -> None:
    emulator_conn.add_fault(Fault(kind="status", status=403, endpoint="result", msg="key disabled"))
    with pytest.raises(VidgenAuthError, match="HTTP 403"):
        hook.get_result("proj_1")
    assert len(emulator_conn.requests) == 1


def test_test_connection_wrong_base_path_is_not_ok(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = emulator_conn.base_url.replace("/kyyReactApiServer", "/wrong")
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT", json.dumps({"conn_type": "vidgen", "host": wrong, "password": "k"})
    )
    ok, message = VidgenHook().test_connection()
    assert not ok
    assert "check the Base URL" in message


def test_test_connection_makes_one_request_without_retries(hook: VidgenHook, emulator_conn: Emulator) -> None:
    emulator_conn.add_fault(Fault(kind="status", status=503, endpoint="result", times=10))
    ok, message = hook.test_connection()
    assert not ok
    assert "503" in message
    assert len(emulator_conn.requests) == 1


def test_result_tolerates_loose_types(hook: VidgenHook, emulator_conn: Emulator) -> None:
    from airflow_provider_vidgen import protocol

    body = json.dumps(
        {"id": 123, "status": "failed", "created": 1761635478.7, "error": {"message": "policy", "type": "x"}}
    )
    result = protocol.parse_result(200, body, "123", None)
    assert (result.id, result.created, result.error) == ("123", 1761635478, "policy")


def test_key_with_control_characters_refused_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps({"conn_type": "vidgen", "host": "https://api.example.com", "password": "abc\ndef"}),
    )
    with pytest.raises(VidgenConfigError, match="control characters") as info:
        VidgenHook().create(VIDEOS)
    assert "abc" not in str(info.value)


def test_uri_connection_keeps_port_and_path(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        f"vidgen://:{emulator_conn.api_key}@127.0.0.1:{emulator_conn.port}/kyyReactApiServer",
    )
    hook = VidgenHook()
    assert hook.settings.base_url == f"https://127.0.0.1:{emulator_conn.port}/kyyReactApiServer"


def test_starvideos_create_answered_failed_raises_generation_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_create_transport import ScriptedServer

    body = json.dumps({"id": "video_starvideos_7", "object": "video", "status": "failed", "error": "policy"})
    answer = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    server = ScriptedServer([f"raw:{answer}"])
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_VIDGEN_DEFAULT",
            json.dumps({"conn_type": "vidgen", "host": f"http://127.0.0.1:{server.port}", "password": "k"}),
        )
        with pytest.raises(VidgenGenerationFailedError, match="video_starvideos_7 failed: policy") as info:
            VidgenHook().create(STAR)
    finally:
        server.close()
    assert info.value.generation_id == "video_starvideos_7"
    assert info.value.api_error == "policy"
    assert len(server.requests) == 1  # not resent


def test_test_connection_without_a_key_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_X", json.dumps({"conn_type": "vidgen", "host": "https://api.example"}))
    ok, message = VidgenHook("vidgen_x").test_connection()
    assert not ok
    assert "vidgen_x" in message
    assert "no API key" in message
