"""Response parsing and retry arithmetic shared by the hook and the trigger."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import pytest

from airflow_provider_vidgen import protocol
from airflow_provider_vidgen.exceptions import (
    VidgenAPIError,
    VidgenAuthError,
    VidgenGenerationFailedError,
    VidgenMalformedResponseError,
    VidgenNotFoundError,
    VidgenRequestRejectedError,
    VidgenTransientError,
    VidgenValidationError,
)


def test_videos_create_success() -> None:
    body = json.dumps({"code": "0", "msg": None, "data": {"projectId": "proj_1"}})
    assert protocol.parse_videos_create(200, body, None) == "proj_1"


@pytest.mark.parametrize("code", ["1", "400", 500, "E_QUOTA"])
def test_videos_create_nonzero_code_is_an_error_even_with_http_200(code: object) -> None:
    body = json.dumps({"code": code, "msg": "insufficient balance", "data": None})
    with pytest.raises(VidgenAPIError, match="insufficient balance") as info:
        protocol.parse_videos_create(200, body, None)
    assert str(code) in str(info.value)


@pytest.mark.parametrize(
    "body", ["not json", "[]", json.dumps({"code": "0", "data": {}}), json.dumps({"projectId": "x"})]
)
def test_videos_create_malformed(body: str) -> None:
    with pytest.raises(VidgenAPIError):
        protocol.parse_videos_create(200, body, None)


def test_starvideos_create() -> None:
    body = json.dumps({"id": "video_starvideos_1", "object": "video", "status": "queued", "new": 1})
    assert protocol.parse_starvideos_create(200, body, None) == "video_starvideos_1"
    with pytest.raises(VidgenAPIError, match="no id"):
        protocol.parse_starvideos_create(200, "{}", None)
    with pytest.raises(VidgenAPIError, match="busy"):
        protocol.parse_starvideos_create(200, json.dumps({"code": "7", "msg": "busy", "data": None}), None)


def test_result_flat_and_enveloped() -> None:
    flat = {"id": "p", "status": "processing", "video_url": None, "error": None}
    assert protocol.parse_result(200, json.dumps(flat), "p", None).status == "processing"
    wrapped = {"code": "0", "msg": None, "data": flat}
    assert protocol.parse_result(200, json.dumps(wrapped), "p", None).status == "processing"
    with pytest.raises(VidgenAPIError, match="nope"):
        protocol.parse_result(200, json.dumps({"code": "9", "msg": "nope", "data": None}), "p", None)


@pytest.mark.parametrize("body", ["{not json", "[1]", json.dumps({"id": "p"})])
def test_result_malformed_is_transient(body: str) -> None:
    with pytest.raises(VidgenTransientError):
        protocol.parse_result(200, body, "p", None)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, VidgenAuthError),
        (403, VidgenAuthError),
        (404, VidgenNotFoundError),
        (400, VidgenRequestRejectedError),
        (422, VidgenRequestRejectedError),
        (408, VidgenTransientError),
        (429, VidgenTransientError),
        (500, VidgenTransientError),
        (503, VidgenTransientError),
    ],
)
def test_error_for_status(status: int, cls: type) -> None:
    error = protocol.error_for_status(status, '{"msg": "x"}', "GET /v1/result/p", None)
    assert type(error) is cls
    assert f"HTTP {status}" in str(error)
    assert error.http_status == status


def test_error_messages_never_carry_the_key_and_are_short() -> None:
    body = "echo: Authorization: Bearer sk-live-123 " + "x" * 1000
    error = protocol.error_for_status(500, body, "POST /v1/videos/videos", "sk-live-123")
    assert "sk-live-123" not in str(error)
    assert len(str(error)) < 400


def test_result_path_encodes_and_rejects_empty() -> None:
    assert protocol.result_path("proj_1") == "/v1/result/proj_1"
    assert protocol.result_path("a/b?c") == "/v1/result/a%2Fb%3Fc"
    with pytest.raises(VidgenValidationError):
        protocol.result_path(" ")


def test_parse_retry_after() -> None:
    assert protocol.parse_retry_after("7") == 7
    assert protocol.parse_retry_after("0.5") == 0.5
    assert protocol.parse_retry_after(None) is None
    assert protocol.parse_retry_after("soon") is None
    now = time.time()
    assert 9 <= protocol.parse_retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10  # type: ignore[operator]
    assert protocol.parse_retry_after(formatdate(now - 100, usegmt=True), now=now) == 0


def test_retry_after_is_capped() -> None:
    assert protocol.parse_retry_after("86400") == protocol.MAX_RETRY_AFTER
    assert protocol.parse_retry_after("nan") is None


def test_none_generation_id_explains_the_missing_xcom() -> None:
    with pytest.raises(VidgenValidationError, match="found no XCom"):
        protocol.result_path("None")


@pytest.mark.parametrize(
    ("error", "api_error"),
    [("content policy", "content policy"), ({"message": "bad image", "type": "x"}, "bad image"), (None, None)],
)
def test_starvideos_create_answered_failed_raises_with_the_id(error: object, api_error: str | None) -> None:
    body = json.dumps({"id": "video_starvideos_9", "object": "video", "status": "failed", "error": error})
    with pytest.raises(VidgenGenerationFailedError) as info:
        protocol.parse_starvideos_create(200, body, None)
    assert info.value.generation_id == "video_starvideos_9"
    assert info.value.api_error == api_error


def test_starvideos_failed_error_text_is_redacted() -> None:
    body = json.dumps({"id": "v1", "status": "failed", "error": "key sk-123 has no credit"})
    with pytest.raises(VidgenGenerationFailedError) as info:
        protocol.parse_starvideos_create(200, body, "sk-123")
    assert "sk-123" not in str(info.value)


@pytest.mark.parametrize("code", ["400", "401", "403", "404", "422", "429", " 400 "])
def test_refusal_codes_prove_nothing_was_created(code: str) -> None:
    body = json.dumps({"code": code, "msg": "no", "data": None})
    with pytest.raises(VidgenAPIError) as info:
        protocol.parse_videos_create(200, body, None)
    assert protocol.create_refused(info.value)


@pytest.mark.parametrize("code", ["1", "1001", "500", "503", "E_QUOTA", "", None, 400.5])
def test_other_codes_do_not_prove_nothing_was_created(code: object) -> None:
    body = json.dumps({"code": code, "msg": "no", "data": None})
    with pytest.raises(VidgenAPIError) as info:
        protocol.parse_videos_create(200, body, None)
    assert not protocol.create_refused(info.value)
    assert not protocol.create_refused(VidgenAPIError("HTTP 400 without an envelope", 400))


@pytest.mark.parametrize("family", ["videos", "starvideos"])
def test_a_created_id_with_control_characters_is_malformed_and_blanks_are_stripped(family: str) -> None:
    def answer(task_id: str) -> str:
        if family == "videos":
            return json.dumps({"code": "0", "msg": None, "data": {"projectId": task_id}})
        return json.dumps({"id": task_id, "status": "queued"})

    parse = protocol.parse_videos_create if family == "videos" else protocol.parse_starvideos_create
    assert parse(200, answer("  proj_1 \n"), "k") == "proj_1"
    with pytest.raises(VidgenMalformedResponseError, match="control characters"):
        parse(200, answer("proj_1\n2026-01-01 [info] Created generation proj_2"), "k")


def test_a_created_id_sent_as_a_number_is_kept_as_text() -> None:
    # The result model reads numeric ids as text; a create answered so is billed, its id must not be lost.
    videos = json.dumps({"code": "0", "msg": None, "data": {"projectId": 1234567890}})
    assert protocol.parse_videos_create(200, videos, "k") == "1234567890"
    assert protocol.parse_starvideos_create(200, json.dumps({"id": 42, "status": "queued"}), "k") == "42"
    with pytest.raises(VidgenMalformedResponseError):
        protocol.parse_starvideos_create(200, json.dumps({"id": True, "status": "queued"}), "k")


@pytest.mark.parametrize(
    "created", ["Infinity", "1e400", "-Infinity", "9" * 400], ids=["inf", "1e400", "-inf", "400 digits"]
)
def test_a_created_that_is_no_unix_time_is_a_malformed_answer(created: str) -> None:
    # Not an OverflowError escaping the parser: the same transient "malformed" as any other bad answer.
    body = '{"id": "p", "status": "processing", "created": ' + created + "}"
    with pytest.raises(VidgenTransientError):
        protocol.parse_result(200, body, "p", None)
