"""Exceptions raised by the provider.

Classes that also derive from ``AirflowFailException`` fail the task without Airflow retries:
retrying cannot fix them (bad input, a rejected key, a request the API refuses). Which errors end a
wait at once is derived from that, by type, in one place: :data:`WAIT_ENDING_ERRORS`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, AirflowSensorTimeout

if TYPE_CHECKING:
    from pydantic import ValidationError


#: Parameters whose values validation errors never quote.
UNQUOTED_PARAMETERS = frozenset({"prompt"})


class VidgenError(AirflowException):
    """Base class of every error raised by this provider."""


class VidgenValidationError(VidgenError, AirflowFailException, ValueError):
    """Parameters break a rule of the API; raised before any request is sent. Never retried."""

    @classmethod
    def from_pydantic(
        cls, what: str, err: ValidationError, rules: dict[str, str] | None = None
    ) -> VidgenValidationError:
        """Turn a pydantic error into one message that names each parameter and the rule it breaks.

        :param what: What was being validated (e.g. "Videos request").
        :param err: The pydantic error.
        :param rules: The API's rule for each parameter, quoted after its problem.
        """
        return cls.from_errors(what, err.errors(include_url=False), rules)

    @classmethod
    def from_errors(
        cls,
        what: str,
        errors: Sequence[Mapping[str, Any]],
        rules: dict[str, str] | None = None,
        unquoted: Collection[str] = UNQUOTED_PARAMETERS,
    ) -> VidgenValidationError:
        """Like :meth:`from_pydantic`, from pydantic's list of error dicts.

        :param unquoted: Parameters whose value is never quoted (the prompt): their length or type is
            given instead.
        """
        rules = rules or {}
        lines = []
        for item in errors:
            names = [str(part) for part in item["loc"] if not isinstance(part, int)]
            indexes = [f"[{part}]" for part in item["loc"] if isinstance(part, int)]
            name = ".".join(names) + "".join(indexes)
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "missing":
                message = "is required"
            elif item["type"] == "extra_forbidden":
                message = "is not a parameter of this API"
            message = (
                message.replace("Input should be", "must be")
                .replace("String should have", "must have")
                .replace("List should have", "must have")
                .replace("Value should have", "must have")
                .replace(" after validation", "")
            )
            if item["type"] == "missing" or not names:
                got = ""
            elif names[0] in unquoted:
                got = f" (got {_described(item.get('input'))})"
            else:
                got = f" (got {_short(item.get('input'))})"
            rule = rules.get(names[0]) if names else None
            text = f"{name}: {message}{got}" if names else message
            lines.append(text + (f" [rule: {rule}]" if rule else ""))
        return cls(f"Invalid {what}: " + "; ".join(lines))


def _described(value: object) -> str:
    """A value's length (text) or type, never its content."""
    if isinstance(value, str):
        return f"{len(value)} characters"
    return f"a value of type {type(value).__name__}"


def _without_query(value: object) -> object:
    # A media URL's query may be a signature (a presigned URL): it is never quoted.
    if isinstance(value, str) and "://" in value:
        for mark in ("#", "?"):
            if mark in value:
                value = value.split(mark, 1)[0] + mark + "..."
        return value
    if isinstance(value, (list, tuple)):
        return [_without_query(part) for part in value]
    return value


def _short(value: object, limit: int = 80) -> str:
    text = repr(_without_query(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class VidgenConfigError(VidgenError, AirflowFailException):
    """The Airflow connection is unusable (no API key, clear-text URL to a remote host...)."""


class VidgenUnknownFamilyError(VidgenError, AirflowFailException, TypeError):
    """A request (or request class) that belongs to no API family of :mod:`airflow_provider_vidgen.families`.

    Nothing is sent: a request is never guessed into another family's endpoint.
    """


class VidgenAPIError(VidgenError):
    """The API answered with an error.

    :param message: What went wrong (never contains the API key).
    :param http_status: HTTP status, when there was one.
    :param json_body: The answer's body was JSON.
    :param api_code: The ``code`` of the API's ``{code, msg, data}`` error envelope, when it sent one.
    :param api_message: The envelope's ``msg`` (redacted), when the body was the API's JSON.
    """

    def __init__(
        self,
        message: str,
        http_status: int | None = None,
        json_body: bool = False,
        api_code: str | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.json_body = json_body
        self.api_code = api_code
        self.api_message = api_message


class VidgenAuthError(VidgenAPIError, AirflowFailException):
    """The API rejected the key (HTTP 401/403). Never retried."""


class VidgenRequestRejectedError(VidgenAPIError, AirflowFailException):
    """The API refused the request (HTTP 4xx other than 401/403/404/408/429). Never retried."""


class VidgenNotFoundError(VidgenAPIError):
    """The generation id is unknown to the API (HTTP 404 on the result endpoint)."""


class VidgenTransientError(VidgenAPIError):
    """A transient failure (connection, timeout, 408, 429, 5xx, malformed answer).

    :param message: What went wrong.
    :param http_status: HTTP status, when there was one.
    :param retry_after: Seconds the server asked to wait (``Retry-After``), when it did.
    """

    def __init__(self, message: str, http_status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, http_status)
        self.retry_after = retry_after


class VidgenMalformedResponseError(VidgenTransientError):
    """A 2xx answer that does not have the documented shape (not JSON, fields missing)."""


class VidgenCreateOutcomeUnknownError(VidgenError, AirflowFailException):
    """A create request may or may not have created (and billed) a task. Not retried by default.

    Raised when a create fails after the first byte of its request was sent (a read timeout, a
    dropped connection or broken TLS stream, an answer that cannot be parsed), on a 5xx or an
    unreadable 2xx, and on an error envelope whose code is not a refusal. The API
    has no idempotency key, so the provider never resends such a request by itself, and the task
    fails without Airflow retries unless the operator has ``retry_on_unknown_create_outcome=True``.
    """


class VidgenStateNotRecordedError(VidgenError, AirflowFailException):
    """A generation was created but its id could not be written to the task_state_store. Never retried
    (a retry would not find it and would create, and bill, another)."""


class VidgenGenerationFailedError(VidgenError):
    """The generation ended with status ``failed``.

    :param generation_id: The id of the failed generation.
    :param api_error: The API's ``error`` text.
    """

    def __init__(self, generation_id: str, api_error: str | None) -> None:
        super().__init__(f"Generation {generation_id} failed: {api_error or 'the API gave no reason'}")
        self.generation_id = generation_id
        self.api_error = api_error


class VidgenWaitTimeoutError(VidgenError):
    """Waiting for a generation took longer than the allowed timeout.

    :param generation_id: The id that was being waited on.
    :param timeout: The timeout in seconds.
    :param last_status: The last status seen.
    """

    def __init__(self, generation_id: str, timeout: float, last_status: str | None) -> None:
        super().__init__(
            f"Generation {generation_id} did not finish within {timeout:g}s "
            f"(last status: {last_status or 'never read'}). It may still finish: wait for it with "
            f"VideoGenerationSensor(generation_id={generation_id!r}) instead of creating a new one."
        )
        self.generation_id = generation_id
        self.timeout = timeout
        self.last_status = last_status


class VidgenSensorTimeoutError(VidgenWaitTimeoutError, AirflowSensorTimeout):
    """``VideoGenerationSensor`` ran past its ``timeout`` (fails the task without retries, like any sensor)."""


#: The one definition of the errors that end a wait at once, by type: what an Airflow retry cannot fix
#: (every ``AirflowFailException`` above: a rejected key, a refused request, bad parameters or
#: connection) cannot be fixed by waiting either, nor can an id the API does not know (404). The
#: synchronous wait, the sensor, the trigger and the events a trigger sends all read this.
WAIT_ENDING_ERRORS: tuple[type[BaseException], ...] = (AirflowFailException, VidgenNotFoundError)


def ends_wait(error: BaseException) -> bool:
    """Whether ``error`` ends a wait at once (see :data:`WAIT_ENDING_ERRORS`)."""
    return isinstance(error, WAIT_ENDING_ERRORS)


def wait_errors() -> dict[str, type[VidgenError]]:
    """The classes a wait can end with by error, by name (how a trigger's ``error`` event names them):
    the classes of this module that end a wait, :class:`VidgenTransientError` (the failure budget
    spent) and :class:`VidgenAPIError`."""
    classes = [value for value in globals().values() if isinstance(value, type) and issubclass(value, VidgenError)]
    return {
        cls.__name__: cls
        for cls in classes
        if cls.__module__ == __name__
        and (issubclass(cls, WAIT_ENDING_ERRORS) or cls in (VidgenTransientError, VidgenAPIError))
    }
