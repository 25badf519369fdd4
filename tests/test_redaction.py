"""The API key never appears in an error message, in any of its common escaped forms, and is
registered with Airflow's secrets masker on every path that reads it (hook and trigger)."""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_vidgen import _compat, protocol
from airflow_provider_vidgen.exceptions import VidgenAPIError, VidgenMalformedResponseError, VidgenTransientError
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from tests.test_create_transport import ScriptedServer

KEY = "sk-live/Ab_9.x+y"


def escaped_forms(key: str) -> dict[str, str]:
    """The key as a server might echo it."""
    return {
        "plain": key,
        "json": json.dumps(key)[1:-1],
        "json slash": key.replace("/", "\\/"),
        "json \\u of every char": "".join(f"\\u{ord(c):04x}" for c in key),
        "json \\u of one char": key.replace("-", "\\u002d"),
        "json \\u upper hex": key.replace("-", "\\u002D"),
        "double-escaped json": json.dumps(key.replace("/", "\\/"))[1:-1],
        "url-encoded": quote(key, safe=""),
        "url-encoded lower hex": quote(key, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
        "html entity": key.replace("s", "&#115;").replace("/", "&#x2f;"),
        "python \\x": key.replace("-", "\\x2d"),
    }


def leaks(text: str, key: str = KEY) -> list[str]:
    """The escaped forms of ``key`` found in ``text``."""
    return [name for name, form in escaped_forms(key).items() if form in text]


@pytest.mark.parametrize("form", list(escaped_forms(KEY)))
def test_redact_finds_each_escaped_form(form: str) -> None:
    text = f"error: the key {escaped_forms(KEY)[form]} is not valid"
    redacted = protocol.redact(text, KEY)
    assert redacted == "error: the key *** is not valid"


def test_redact_leaves_other_text_alone() -> None:
    assert protocol.redact("nothing secret here: sk-live", KEY) == "nothing secret here: sk-live"
    assert protocol.redact("", KEY) == ""
    assert protocol.redact("text", None) == "text"


@pytest.mark.parametrize("form", list(escaped_forms(KEY)))
def test_error_excerpts_decode_json_and_scrub_the_key(form: str) -> None:
    raw = '{"code": "500", "msg": "bad key ' + escaped_forms(KEY)[form].replace('"', '\\"') + '"}'
    error = protocol.error_for_status(500, raw, "POST /v1/videos/videos", KEY)
    assert leaks(str(error)) == []
    assert "bad key ***" in str(error)


def test_json_body_is_quoted_decoded() -> None:
    body = json.dumps({"msg": "caf\u00e9 \u00d7 quota"})  # ensure_ascii: escaped on the wire
    assert "\\u00e9" in body
    assert "caf\u00e9 \u00d7 quota" in protocol.excerpt(body)


def test_envelope_msg_with_an_escaped_key_is_scrubbed() -> None:
    body = '{"code": "1001", "msg": "key sk\\u002dlive\\/Ab_9.x+y disabled", "data": null}'
    with pytest.raises(VidgenAPIError) as info:
        protocol.parse_videos_create(200, body, KEY)
    assert leaks(str(info.value)) == []


def _escaped_echo_server(status: int = 500) -> ScriptedServer:
    body = '{"msg": "invalid key sk\\u002dlive\\/Ab_9.x+y (' + quote(KEY, safe="") + ")" + html.escape('"') + '"}'
    answer = (
        f"HTTP/1.1 {status} Oops\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n{body}"
    )
    return ScriptedServer([f"raw:{answer}"])


def _use(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps(
            {
                "conn_type": "vidgen",
                "host": f"http://127.0.0.1:{port}",
                "password": KEY,
                "extra": {"max_retries": 1, "retry_base_delay": 0.01},
            }
        ),
    )


def test_hook_error_from_a_body_echoing_the_escaped_key(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _escaped_echo_server()
    try:
        _use(monkeypatch, server.port)
        with pytest.raises(VidgenTransientError, match="HTTP 500") as info:
            VidgenHook().get_result("proj_1")
    finally:
        server.close()
    assert leaks(str(info.value)) == []
    assert "invalid key ***" in str(info.value)


def test_connection_test_message_from_a_body_echoing_the_escaped_key(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _escaped_echo_server(status=503)
    try:
        _use(monkeypatch, server.port)
        ok, message = VidgenHook().test_connection()
    finally:
        server.close()
    assert not ok
    assert "HTTP 503" in message
    assert leaks(message) == []


def test_connection_test_without_a_key_is_a_failed_test_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT", json.dumps({"conn_type": "vidgen", "host": "https://api.example"})
    )
    ok, message = VidgenHook().test_connection()
    assert not ok
    assert "VidgenConfigError" in message
    assert "no API key" in message


def test_the_key_is_registered_with_the_masker_by_the_hook_and_by_the_trigger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    masked: list[str] = []
    real = _compat.mask_secret

    def record(secret: Any, *args: Any, **kwargs: Any) -> None:
        masked.append(secret)
        real(secret, *args, **kwargs)

    monkeypatch.setattr(_compat, "mask_secret", record)
    _use(monkeypatch, 1)
    assert VidgenHook().settings.api_key == KEY
    assert masked == [KEY]

    from airflow_provider_vidgen.triggers.vidgen import resolve_settings

    masked.clear()
    settings = asyncio.run(resolve_settings("vidgen_default"))
    assert settings.api_key == KEY
    assert masked == [KEY]


@pytest.mark.parametrize("form", list(escaped_forms(KEY)))
def test_a_failed_generations_error_echoing_the_key_is_scrubbed(form: str) -> None:
    body = json.dumps({"id": "proj_1", "status": "failed", "error": f"upstream refused key {escaped_forms(KEY)[form]}"})
    result = protocol.parse_result(200, body, "proj_1", KEY)
    assert result.is_failed
    assert result.error == "upstream refused key ***"


def test_a_failed_wait_never_quotes_the_key_the_api_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_vidgen.exceptions import VidgenGenerationFailedError
    from airflow_provider_vidgen.models import VideosRequest
    from airflow_provider_vidgen.testing.emulator import Emulator, Timeline
    from airflow_provider_vidgen.waiting import wait_for_generation

    error = "rejected by upstream: key " + escaped_forms(KEY)["json slash"] + " / " + KEY
    with Emulator(api_key=KEY, timeline=Timeline(queued_for=0, processing_for=0, outcome="failed", error=error)) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_VIDGEN_DEFAULT",
            json.dumps({"conn_type": "vidgen", "host": emu.base_url, "password": KEY}),
        )
        hook = VidgenHook()
        try:
            generation_id = hook.create(VideosRequest.build(model="videos", prompt="a cat", duration=5))
            result = hook.get_result(generation_id)
            with pytest.raises(VidgenGenerationFailedError) as info:
                wait_for_generation(
                    hook.get_result, generation_id, poll_interval=0.1, timeout=10, max_consecutive_failures=3
                )
        finally:
            hook.close()
    assert leaks(json.dumps(result.to_xcom())) == []
    assert leaks(str(info.value)) == []
    assert leaks(str(info.value.api_error)) == []
    assert "rejected by upstream: key *** / ***" in str(info.value)


@pytest.mark.parametrize("family", ["videos", "starvideos"])
@pytest.mark.parametrize("form", ["plain", "json \\u of one char", "url-encoded"])
def test_a_create_answer_whose_id_echoes_the_key_is_not_used(family: str, form: str) -> None:
    echoed = f"task-{escaped_forms(KEY)[form]}"
    if family == "videos":
        body = '{"code": "0", "msg": null, "data": {"projectId": "' + echoed + '"}}'
        parse = protocol.parse_videos_create
    else:
        body = '{"id": "' + echoed + '", "status": "queued"}'
        parse = protocol.parse_starvideos_create
    with pytest.raises(VidgenMalformedResponseError, match="contains the API key") as info:
        parse(200, body, KEY)
    assert leaks(str(info.value)) == []


def test_a_create_whose_id_echoes_the_key_pushes_no_key_to_xcom(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_vidgen.exceptions import VidgenCreateOutcomeUnknownError
    from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator
    from airflow_provider_vidgen.testing.emulator import Emulator, Fault
    from tests.conftest import FakeTI

    answer = json.dumps({"code": "0", "msg": None, "data": {"projectId": f"proj_{KEY}"}})
    with Emulator(api_key=KEY) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_VIDGEN_DEFAULT", json.dumps({"conn_type": "vidgen", "host": emu.base_url, "password": KEY})
        )
        emu.add_fault(Fault(kind="status", status=200, endpoint="videos_create", text=answer))
        ti = FakeTI()
        with pytest.raises(VidgenCreateOutcomeUnknownError) as info:
            VideosCreateOperator(task_id="t", prompt="a cat", duration=5).execute({"ti": ti})
    assert leaks(json.dumps(ti.xcom)) == []
    assert leaks(str(info.value)) == []


def test_an_envelope_code_echoing_the_key_is_scrubbed_on_the_error() -> None:
    with pytest.raises(VidgenAPIError) as info:
        protocol.parse_videos_create(200, json.dumps({"code": KEY, "msg": "no"}), KEY)
    assert info.value.api_code == "***"
    assert leaks(str(info.value)) == []
