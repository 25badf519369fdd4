"""``VidgenHook``: the synchronous client of the Videos and StarVideos APIs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import BaseHook
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type, stop_after_attempt

from airflow_provider_vidgen import protocol
from airflow_provider_vidgen._compat import mask_secret
from airflow_provider_vidgen.connection import ConnectionSettings
from airflow_provider_vidgen.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenConfigError,
    VidgenCreateOutcomeUnknownError,
    VidgenMalformedResponseError,
    VidgenNotFoundError,
    VidgenTransientError,
)
from airflow_provider_vidgen.models import GenerationResult, StarVideosRequest, VideosRequest

if TYPE_CHECKING:
    # requests is imported when the hook first talks to the API, not on every DAG parse (~0.1 s).
    import requests

T = TypeVar("T")

#: Id used by ``test_connection``: reading its result never creates or bills anything.
PROBE_GENERATION_ID = "airflow-provider-vidgen-connection-test"
#: Timeout of the connection test's single request, seconds (the UI waits on it).
PROBE_TIMEOUT = 10.0


class _Retry(VidgenTransientError):
    """A failure after which sending the same request again is safe."""


def _never_connected(exc: requests.RequestException) -> bool:
    """True when ``exc`` proves the request never reached the server (so nothing was created)."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return True  # no connection, or the TLS handshake failed before any byte of the request
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(exc, requests.exceptions.ReadTimeout):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        # NewConnectionError covers refused connections and DNS failures (NameResolutionError).
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


class VidgenHook(BaseHook):
    """Talks to the Videos / StarVideos API with the key and base URL of an Airflow connection.

    One ``requests.Session`` per hook (keep-alive), a timeout on every request, and retries that
    never resend a create whose outcome is unknown.

    :param vidgen_conn_id: Airflow connection id of type ``vidgen``: host = base URL (empty for the
        production API), password = API key.
    :param timeout: Read timeout per request in seconds (overrides the connection extra ``timeout``).
    :param max_retries: Retries after a retryable failure (overrides the extra ``max_retries``).
    :param retry_base_delay: First backoff delay in seconds (overrides the extra).
    :param retry_max_delay: Longest backoff delay in seconds (overrides the extra).
    """

    conn_name_attr = "vidgen_conn_id"
    default_conn_name = "vidgen_default"
    conn_type = "vidgen"
    hook_name = "Vidgen (Videos / StarVideos)"

    def __init__(
        self,
        vidgen_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_base_delay: float | None = None,
        retry_max_delay: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vidgen_conn_id = vidgen_conn_id
        self._overrides = {
            "timeout": timeout,
            "max_retries": max_retries,
            "retry_base_delay": retry_base_delay,
            "retry_max_delay": retry_max_delay,
        }
        self._session: requests.Session | None = None

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        """Settings read once from the Airflow connection (the key is registered with the masker)."""
        conn = self.get_connection(self.vidgen_conn_id)
        settings = ConnectionSettings.from_connection(conn, **self._overrides)
        mask_secret(settings.api_key)
        return settings

    def get_conn(self) -> requests.Session:
        """The hook's ``requests.Session``, created on first use and kept for keep-alive."""
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update(self.settings.headers())
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- API ----------------------------------------------------------------------------------

    def create_videos(self, request: VideosRequest) -> str:
        """Create a Videos generation task (billed) and return its generation id (``projectId``).

        :param request: The validated request.
        """
        return self._request(
            "POST",
            protocol.VIDEOS_CREATE_PATH,
            protocol.parse_videos_create,
            json=request.to_wire(),
            create=True,
        )

    def create_starvideos(self, request: StarVideosRequest) -> str:
        """Create a StarVideos generation task (billed) and return its generation id.

        :param request: The validated request.
        """
        return self._request(
            "POST",
            protocol.STARVIDEOS_CREATE_PATH,
            protocol.parse_starvideos_create,
            json=request.to_wire(),
            create=True,
        )

    def create(self, request: VideosRequest | StarVideosRequest) -> str:
        """Create a generation of the family ``request`` belongs to; return its id.

        :param request: A :class:`VideosRequest` or :class:`StarVideosRequest`.
        """
        if isinstance(request, VideosRequest):
            return self.create_videos(request)
        return self.create_starvideos(request)

    def get_result(self, generation_id: str) -> GenerationResult:
        """Read the status (and, once completed, the video URL) of a generation.

        Retried with backoff on connection errors, timeouts, 429 (honouring ``Retry-After``) and 5xx.

        :param generation_id: ``projectId`` of a Videos create or ``id`` of a StarVideos create.
        """
        return self._request(
            "GET",
            protocol.result_path(generation_id),
            lambda status, body, secret: protocol.parse_result(status, body, generation_id, secret),
        )

    def test_connection(self) -> tuple[bool, str]:
        """Check the base URL and key without creating (billing) anything.

        Reads the result of a probe id that does not exist, once, with no retries and a short
        timeout: 401/403 means the key is rejected; a JSON 404 (the unknown id) means the API is
        reachable and did not reject the key; anything else is reported as a problem.
        """
        probe = VidgenHook(self.vidgen_conn_id)
        probe.settings = replace(self.settings, timeout=PROBE_TIMEOUT, connect_timeout=PROBE_TIMEOUT, max_retries=0)
        try:
            probe.get_result(PROBE_GENERATION_ID)
        except VidgenAuthError as err:
            return False, f"API key rejected: {err}"
        except VidgenNotFoundError as err:
            if err.json_body:
                return True, "API reachable and API key not rejected (the probe id is unknown, as expected)"
            return False, f"The Base URL answered 404 without the API's JSON: check the Base URL ({err})"
        except Exception as err:
            return False, f"{type(err).__name__}: {protocol.redact(str(err), self._key_or_none())}"
        finally:
            probe.close()
        return True, "API reachable and API key not rejected"

    # -- transport ----------------------------------------------------------------------------

    def _key_or_none(self) -> str | None:
        try:
            return self.settings.api_key
        except Exception:
            return None

    def _request(
        self,
        method: str,
        path: str,
        parse: Callable[[int, str, str], T],
        *,
        json: Any = None,
        create: bool = False,
    ) -> T:
        """Send a request with the retry policy; return ``parse(status, body, key)`` of the 2xx answer.

        Reads are retried after any transient failure (including a malformed answer). A create is
        retried only when it provably created nothing (no connection made, or 408/429); otherwise
        its outcome is unknown.
        """
        settings = self.settings
        what = f"{method} {path}"
        retrying = Retrying(
            stop=stop_after_attempt(settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            before_sleep=self._log_retry(what),
            reraise=False,
        )
        try:
            return retrying(self._send_once, method, path, parse, json, create)
        except RetryError as err:
            last = err.last_attempt.exception()
            assert last is not None
            raise protocol.gave_up(last, err.last_attempt.attempt_number) from None

    def _send_once(self, method: str, path: str, parse: Callable[[int, str, str], T], json: Any, create: bool) -> T:
        import requests

        settings = self.settings
        url = settings.base_url + path
        what = f"{method} {path}"
        try:
            response = self.get_conn().request(
                method, url, json=json, timeout=(settings.connect_timeout, settings.timeout), allow_redirects=False
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, ValueError) as exc:
            # Refused by the client before anything was sent: a configuration problem, never retried.
            raise VidgenConfigError(
                f"{what}: the request could not be built ({type(exc).__name__}); check the connection"
            ) from None
        except requests.RequestException as exc:
            reason = f"{what}: {type(exc).__name__}: {protocol.redact(str(exc), settings.api_key)}"
            if not create or _never_connected(exc):
                raise _Retry(reason) from None
            raise VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(reason)) from None
        status = response.status_code
        retry_after = protocol.parse_retry_after(response.headers.get("Retry-After"))
        error = protocol.error_for_answer(status, response.text, what, settings.api_key, retry_after)
        if error is None:
            try:
                return parse(status, response.text, settings.api_key)
            except VidgenMalformedResponseError as err:
                if create:
                    # A 2xx we cannot read may still have created the task.
                    raise VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(str(err))) from None
                raise _Retry(str(err), status) from None
        if not isinstance(error, VidgenTransientError):
            raise error
        if create and status not in (protocol.RATE_LIMITED, protocol.REQUEST_TIMEOUT):
            # A 5xx after the request was sent: the task may exist.
            raise VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(str(error)))
        raise _Retry(str(error), status, retry_after)

    def _unknown_outcome_message(self, reason: str) -> str:
        return (
            f"{reason} - the create request was sent but its outcome is unknown: a generation may have been "
            f"created and billed. It was not resent (the API has no idempotency key). Check the provider's "
            f"dashboard or billing for a task created just now before running this task again."
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        settings = self.settings
        return protocol.backoff_delay(
            state.attempt_number, settings.retry_base_delay, settings.retry_max_delay, retry_after
        )

    def _log_retry(self, what: str) -> Callable[[RetryCallState], None]:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.1fs",
                what,
                state.attempt_number,
                self.settings.max_retries + 1,
                exc,
                delay,
            )

        return before_sleep

    # -- UI -----------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form behaviour for Airflow UIs that do not read ``ui-field-behaviour``."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for Airflow 2 UIs, which do not read ``conn-fields`` (same fields)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        widgets: dict[str, Any] = {}
        for name, field in CONN_FIELDS.items():
            field_class = IntegerField if "integer" in field["schema"]["type"] else StringField
            validators = [Optional()] + ([NumberRange(min=0)] if field_class is IntegerField else [])
            widgets[name] = field_class(
                lazy_gettext(field["label"]),
                description=field["description"],
                widget=BS3TextFieldWidget(),
                validators=validators,
            )
        return widgets


__all__ = ["PROBE_GENERATION_ID", "VidgenHook"]
