"""The wire protocol of the API, free of any HTTP client.

Everything here is a pure function of a status code, headers and body text, so the synchronous
hook (requests) and the asynchronous trigger (aiohttp) read answers the same way and classify
failures the same way.
"""

from __future__ import annotations

import email.utils
import functools
import json
import re
import time
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

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
from airflow_provider_vidgen.models import GenerationResult

VIDEOS_CREATE_PATH = "/v1/videos/videos"
STARVIDEOS_CREATE_PATH = "/v1/starvideos/videos"
RESULT_PATH = "/v1/result/{id}"

RATE_LIMITED = 429
REQUEST_TIMEOUT = 408
#: HTTP statuses that say the server did not act on the request: sending it again is safe, also for a create.
NOT_ACTED_ON = frozenset({RATE_LIMITED, REQUEST_TIMEOUT})
BODY_EXCERPT_CHARS = 300
#: The longest ``Retry-After`` honoured, seconds; a server asking for more gets this.
MAX_RETRY_AFTER = 600.0


def not_acted_on(status: int) -> bool:
    """Whether an HTTP status says the server did not act on the request (408, 429)."""
    return status in NOT_ACTED_ON


def transient_status(status: int) -> bool:
    """Whether an HTTP error status may pass when the request is sent again: 408 and 429 (the server
    did not act on it) and any 5xx (for a read; after a create's 5xx its outcome is unknown).

    The one classification of statuses, for API answers and the video host's alike.
    """
    return not_acted_on(status) or status >= 500


def result_path(generation_id: str) -> str:
    """Path of the result endpoint for ``generation_id`` (percent-encoded)."""
    if not isinstance(generation_id, str) or not generation_id.strip():
        raise VidgenValidationError(f"generation_id: must be a non-empty string (got {generation_id!r})")
    if generation_id.strip() == "None":
        raise VidgenValidationError(
            "generation_id: got the string 'None' - the template that produced it found no XCom "
            "(check the upstream task id and key)"
        )
    return RESULT_PATH.format(id=quote(generation_id.strip(), safe=""))


def _escaped_char(char: str) -> str:
    """A regex matching ``char`` as it may appear in quoted text: itself, a JSON ``\\uXXXX`` escape,
    a backslash escape (JSON ``\\/``, possibly escaped again), a percent-encoding or an HTML entity."""
    code = ord(char)
    percent = "".join(f"%{byte:02x}" for byte in char.encode("utf-8"))
    forms = [re.escape(char), rf"\\+u{code:04x}", percent, f"&#0*{code};", f"&#x0*{code:x};"]
    if code < 0x100:
        forms.append(rf"\\+x{code:02x}")
    if not char.isalnum():
        forms.append(r"\\+" + re.escape(char))
    if code > 0xFFFF:  # a JSON escape of a character outside the BMP is a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"\\+u{high:04x}\\+u{low:04x}")
    return "(?:" + "|".join(forms) + ")"


@functools.lru_cache(maxsize=16)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    return re.compile("".join(_escaped_char(char) for char in secret), re.IGNORECASE)


def redact(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` in ``text``, also in its common escaped forms.

    The one redaction function of the provider (hook, async client, connection test). Besides the
    key itself it finds the key with any of its characters written as a JSON ``\\uXXXX`` escape,
    backslash-escaped (JSON's ``\\/``, also escaped twice), as ``\\xXX``, percent-encoded (``%2D``, any
    case) or as an HTML character reference, in any mix.
    """
    if not secret or not text:
        return text
    return _secret_pattern(secret).sub("***", text.replace(secret, "***"))


def _decoded(body: str) -> str:
    """A JSON body as decoded text (escapes resolved, so the key in it is found); other text as is."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if isinstance(payload, str):
        return payload
    return json.dumps(payload, ensure_ascii=False)


def excerpt(body: str, secret: str | None = None, limit: int = BODY_EXCERPT_CHARS) -> str:
    """A short, single-line, secret-free excerpt of a response body for error messages.

    A JSON body is decoded first, and the decoded text is redacted (as is the raw text of any other
    body), so a key the server echoes JSON-escaped is scrubbed too.
    """
    flat = " ".join(redact(_decoded(body), secret).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or ``None``.

    Capped at :data:`MAX_RETRY_AFTER`, so a bad header cannot park a worker for a day.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def error_for_status(
    status: int, body: str, what: str, secret: str | None, retry_after: float | None = None
) -> VidgenAPIError:
    """The exception for an HTTP error answer (status >= 400) to request ``what``.

    :param retry_after: Seconds from the answer's ``Retry-After`` header, kept on transient errors.
    """
    detail = f"{what}: HTTP {status}: {excerpt(body, secret)}"
    if status in (401, 403):
        return VidgenAuthError(
            f"{detail} - the API key was rejected; check the connection's password (API key)", status
        )
    if status == 404:
        payload = _json(body)
        message = payload.get("msg") if isinstance(payload, dict) else None
        return VidgenNotFoundError(
            detail,
            status,
            json_body=isinstance(payload, dict),
            api_message=redact(message, secret) if isinstance(message, str) else None,
        )
    if transient_status(status):
        return VidgenTransientError(detail, status, retry_after)
    return VidgenRequestRejectedError(detail, status)


def error_for_redirect(status: int, what: str) -> VidgenAPIError:
    """A 3xx answer: redirects are never followed, so the key is only ever sent to the base URL."""
    return VidgenRequestRejectedError(
        f"{what}: HTTP {status} redirect; redirects are not followed - check the connection's Base URL", status
    )


def error_for_answer(
    status: int, body: str, what: str, secret: str | None, retry_after: float | None = None
) -> VidgenAPIError | None:
    """The exception for any answer that is not a 2xx (a redirect or an error), ``None`` for a 2xx."""
    if 300 <= status < 400:
        return error_for_redirect(status, what)
    if status >= 400:
        return error_for_status(status, body, what, secret, retry_after)
    return None


def url_for_log(url: str) -> str:
    """``url`` without its query string and fragment (a temporary URL's query may be a signature)."""
    return url.split("#", 1)[0].split("?", 1)[0]


#: Envelope codes (``code != "0"``) of a create answer that mean "refused, nothing was created".
#:
#: The API documents only ``"0"`` (success) and says the reason of any other code is in ``msg``; it
#: does not say whether a task can exist when an error envelope comes back. Only the HTTP-style codes
#: whose meaning is a refusal before acting are taken as "nothing created": a malformed or invalid
#: request (400, 413, 415, 422), a rejected key (401, 403), an unknown route (404, 405) and a rate
#: limit (429). Every other code - 5xx-style codes, vendor codes such as ``"1001"``, anything
#: undocumented - leaves the outcome unknown (:func:`create_refused`), so it is never resent.
CREATE_REFUSED_CODES: frozenset[str] = frozenset({"400", "401", "403", "404", "405", "413", "415", "422", "429"})


def create_refused(error: VidgenAPIError) -> bool:
    """Whether the error envelope ``error`` (from a create answer) proves that nothing was created."""
    return error.api_code is not None and error.api_code.strip() in CREATE_REFUSED_CODES


def _envelope_error(payload: dict[str, Any], what: str, status: int, secret: str | None) -> VidgenAPIError:
    msg = payload.get("msg") or "no reason given"
    code = payload.get("code")
    text = f"{what}: API error code {excerpt(repr(code), secret)}: {excerpt(str(msg), secret)}"
    return VidgenAPIError(text, status, json_body=True, api_code=redact(str(code), secret))


def _created_id(value: Any, what: str, body: str, status: int, secret: str | None) -> str:
    """The id of a create answer, checked before it is logged, recorded and pushed to XCom.

    A number is taken as its text (as the result model reads ids), surrounding blanks are stripped,
    so a billed task whose id is readable is never lost. An id with control characters (it would forge log lines) or
    one that contains the API key (it would put the key in XCom and the metadata database) is not
    used: the answer is malformed, so the create's outcome is unknown.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise VidgenMalformedResponseError(f"{what}: answer has no id: {excerpt(body, secret)}", status)
    value = value.strip()
    if not value.isprintable():
        raise VidgenMalformedResponseError(
            f"{what}: the id in the answer contains control characters: {excerpt(body, secret)}", status
        )
    if secret and redact(value, secret) != value:
        raise VidgenMalformedResponseError(
            f"{what}: the id in the answer contains the API key, so it is not used: {excerpt(body, secret)}", status
        )
    return value


def parse_videos_create(status: int, body: str, secret: str | None) -> str:
    """The ``projectId`` of a successful Videos create answer (HTTP 2xx, envelope ``code`` "0").

    :raises VidgenAPIError: an error envelope (``api_code`` set; see :data:`CREATE_REFUSED_CODES`).
    :raises VidgenMalformedResponseError: not the documented envelope.
    """
    what = f"POST {VIDEOS_CREATE_PATH}"
    payload = _json(body)
    if not isinstance(payload, dict) or "code" not in payload:
        raise VidgenMalformedResponseError(
            f"{what}: answer is not the documented envelope: {excerpt(body, secret)}", status
        )
    if str(payload.get("code")) != "0":
        raise _envelope_error(payload, what, status, secret)
    data = payload.get("data")
    project_id = data.get("projectId") if isinstance(data, dict) else None
    if project_id is None or project_id == "":
        raise VidgenMalformedResponseError(f"{what}: envelope has no data.projectId: {excerpt(body, secret)}", status)
    return _created_id(project_id, what, body, status, secret)


def parse_starvideos_create(status: int, body: str, secret: str | None) -> str:
    """The ``id`` of a successful StarVideos create answer (a flat object).

    :raises VidgenGenerationFailedError: the answer's documented ``status`` is ``failed`` (the task
        was created and failed at once); carries the id and the API's ``error``.
    :raises VidgenAPIError: an error envelope (``api_code`` set).
    :raises VidgenMalformedResponseError: no id.
    """
    what = f"POST {STARVIDEOS_CREATE_PATH}"
    payload = _json(body)
    if isinstance(payload, dict) and "code" in payload and str(payload.get("code")) != "0":
        raise _envelope_error(payload, what, status, secret)
    task_id = _created_id(payload.get("id") if isinstance(payload, dict) else None, what, body, status, secret)
    assert isinstance(payload, dict)
    if payload.get("status") == "failed":
        api_error = GenerationResult(id=task_id, status="failed", error=payload.get("error")).error
        raise VidgenGenerationFailedError(task_id, redact(api_error, secret) if api_error else None)
    return task_id


def parse_result(
    status: int, body: str, generation_id: str, secret: str | None, what: str | None = None
) -> GenerationResult:
    """A :class:`GenerationResult` from a 2xx answer of the result endpoint.

    Accepts the documented flat object and, defensively, the same object wrapped in the
    ``{code, msg, data}`` envelope (a non-"0" code is an error).
    """
    what = what or f"GET {result_path(generation_id)}"
    payload = _json(body)
    if isinstance(payload, dict) and "status" not in payload and "code" in payload:
        if str(payload.get("code")) != "0":
            raise _envelope_error(payload, what, status, secret)
        payload = payload.get("data")
    if not isinstance(payload, dict):
        raise VidgenMalformedResponseError(f"{what}: answer is not a JSON object: {excerpt(body, secret)}", status)
    try:
        result = GenerationResult.model_validate(payload)
    except ValidationError as err:
        raise VidgenMalformedResponseError(
            f"{what}: answer does not have the documented fields ({err.error_count()} problems): "
            f"{excerpt(body, secret)}",
            status,
        ) from None
    # The API's free texts reach exception messages, logs, trigger events and XCom: a failed
    # generation's ``error`` (or an undocumented ``status``) that echoes the key is scrubbed here,
    # once, for the hook, the trigger and the saver alike.
    scrubbed = {
        name: redact(value, secret)
        for name in ("error", "status")
        if isinstance(value := getattr(result, name), str) and redact(value, secret) != value
    }
    return result.model_copy(update=scrubbed) if scrubbed else result
