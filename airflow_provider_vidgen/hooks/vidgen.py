"""``VidgenHook``: the synchronous client of the Videos and StarVideos APIs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_vidgen import families, metrics, protocol
from airflow_provider_vidgen.connection import ConnectionSettings
from airflow_provider_vidgen.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_vidgen.exceptions import (
    VidgenAPIError,
    VidgenAuthError,
    VidgenConfigError,
    VidgenCreateOutcomeUnknownError,
    VidgenError,
    VidgenMalformedResponseError,
    VidgenNotFoundError,
    VidgenTransientError,
    VidgenUnknownFamilyError,
)
from airflow_provider_vidgen.models import GenerationResult, StarVideosRequest, VideosRequest

if TYPE_CHECKING:
    # requests is imported when the hook first talks to the API, not on every DAG parse (~0.1 s).
    import requests

    from airflow_provider_vidgen.families import CreateRequest
    from airflow_provider_vidgen.hooks._transport import SendRecord

T = TypeVar("T")

#: Id used by ``test_connection``: reading its result never creates or bills anything.
PROBE_GENERATION_ID = "airflow-provider-vidgen-connection-test"
#: Timeout of the connection test's single request, seconds (the UI waits on it).
PROBE_TIMEOUT = 10.0


#: Shortest read (and connect) timeout of a request sent close to a wait's deadline, seconds: the
#: last poll before the deadline still gets a chance to be answered.
MIN_REQUEST_TIMEOUT = 1.0
#: Added to a TLS error that shows the server answered the handshake in plain HTTP.
PLAIN_HTTP_HINT = (
    "the host speaks plain HTTP, not TLS: the Base URL is https:// (assumed when it has no scheme); "
    "use http:// for a loopback host"
)


class _Retry(VidgenTransientError):
    """A failure after which sending the same request again is safe."""


def _speaks_plain_http(exc: BaseException) -> bool:
    """Whether a TLS error says the server answered the ClientHello with something that is not TLS."""
    text = str(exc)
    return "WRONG_VERSION_NUMBER" in text or "wrong version number" in text


def _unsent_by_class(exc: BaseException) -> bool:
    """Whether ``exc``'s class alone proves no connection was made (used when nothing was recorded)."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
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
        #: Sleep between retries and the monotonic clock deadlines are read on (replaceable in tests).
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        """Settings read once from the Airflow connection (the key is registered with the masker)."""
        conn = self.get_connection(self.vidgen_conn_id)
        return ConnectionSettings.from_connection(conn, **self._overrides)

    def get_conn(self) -> requests.Session:
        """The hook's ``requests.Session``, created on first use and kept for keep-alive."""
        if self._session is None:
            import requests

            from airflow_provider_vidgen.hooks._transport import RecordingAdapter

            session = requests.Session()
            # Connections that record how far each request got (see _transport): failures are
            # classified by when they happened, not by the exception's class.
            session.mount("https://", RecordingAdapter())
            session.mount("http://", RecordingAdapter())
            session.headers.update(self.settings.headers())
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- API ----------------------------------------------------------------------------------

    def create(self, request: CreateRequest) -> str:
        """Create a generation (billed) at the endpoint of the family ``request`` belongs to; return its id.

        :param request: A validated request of a family of :mod:`airflow_provider_vidgen.families`.
        :raises VidgenUnknownFamilyError: ``request`` belongs to no family (nothing is sent).
        """
        return self._create(families.family_of(request), request)

    def create_videos(self, request: VideosRequest) -> str:
        """Create a Videos generation (billed) and return its generation id (``projectId``); as :meth:`create`.

        :param request: The validated request.
        """
        return self._create(families.VIDEOS, request)

    def create_starvideos(self, request: StarVideosRequest) -> str:
        """Create a StarVideos generation (billed) and return its generation id; as :meth:`create`.

        :param request: The validated request.
        """
        return self._create(families.STARVIDEOS, request)

    def _create(self, family: families.Family, request: CreateRequest) -> str:
        if not isinstance(request, family.request_class):
            raise VidgenUnknownFamilyError(
                f"A {family.display_name} create takes a {family.request_class.__name__}, not a "
                f"{type(request).__name__}; nothing was sent"
            )
        with metrics.counting_create(request):
            return self._request("POST", family.create_path, family.parse_create, json=request.to_wire(), create=True)

    def get_result(self, generation_id: str, *, deadline: float | None = None) -> GenerationResult:
        """Read the status (and, once completed, the video URL) of a generation.

        Retried with backoff on connection errors, timeouts, 429 (honouring ``Retry-After``) and 5xx.

        :param generation_id: ``projectId`` of a Videos create or ``id`` of a StarVideos create.
        :param deadline: A ``time.monotonic()`` value the read must not run past (a wait's timeout):
            no retry sleeps beyond it (the read gives up instead, whatever ``Retry-After`` asks), and
            each request's connect and read timeouts are clipped to the time left (at least
            :data:`MIN_REQUEST_TIMEOUT`).
        """
        return self._request(
            "GET",
            protocol.result_path(generation_id),
            lambda status, body, secret: protocol.parse_result(status, body, generation_id, secret),
            deadline=deadline,
        )

    def test_connection(self) -> tuple[bool, str]:
        """Check the base URL and key without creating (billing) anything.

        Reads the result of a probe id that does not exist, once, with no retries and a short
        timeout: 401/403 means the key is rejected; a JSON 404 (the unknown id) means the API is
        reachable and did not reject the key; anything else is reported as a problem.
        """
        probe = VidgenHook(self.vidgen_conn_id)
        try:
            # Inside the try: a connection without a key (or with a bad extra) is a failed test, not a crash.
            probe.settings = replace(self.settings, timeout=PROBE_TIMEOUT, connect_timeout=PROBE_TIMEOUT, max_retries=0)
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
        deadline: float | None = None,
    ) -> T:
        """Send a request with the retry policy; return ``parse(status, body, key)`` of the 2xx answer.

        Reads are retried after any transient failure (including a malformed answer). A create is
        resent only when it provably created nothing (no byte of it was sent, or 408/429); an error
        envelope is raised as it is when its code is in :data:`protocol.CREATE_REFUSED_CODES`, and
        anything else leaves the outcome unknown.
        With a ``deadline`` (``time.monotonic()`` value) no retry sleeps past it and each request's
        timeouts are clipped to the time left.
        """
        settings = self.settings
        what = f"{method} {path}"
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send_once(method, path, parse, json, create, self._timeouts(deadline))
            except _Retry as err:
                last = err
            if attempt > settings.max_retries:
                raise protocol.gave_up(last, attempt) from None
            delay = protocol.backoff_delay(
                attempt, settings.retry_base_delay, settings.retry_max_delay, last.retry_after
            )
            if deadline is not None and delay >= deadline - self._clock():
                raise VidgenTransientError(
                    f"{last} (gave up after {attempt} attempt{'s' if attempt > 1 else ''}: the next retry, due in "
                    f"{delay:.1f}s, would start after the wait's deadline, {max(0.0, deadline - self._clock()):.1f}s "
                    f"from now)",
                    last.http_status,
                ) from None
            self.log.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.1fs",
                what,
                attempt,
                settings.max_retries + 1,
                last,
                delay,
            )
            self._sleep(delay)

    def _timeouts(self, deadline: float | None) -> tuple[float, float]:
        """(connect, read) timeouts of one request, clipped to the time left before ``deadline``."""
        settings = self.settings
        if deadline is None:
            return settings.connect_timeout, settings.timeout
        left = max(MIN_REQUEST_TIMEOUT, deadline - self._clock())
        return min(settings.connect_timeout, left), min(settings.timeout, left)

    def _send_once(
        self,
        method: str,
        path: str,
        parse: Callable[[int, str, str], T],
        json: Any,
        create: bool,
        timeouts: tuple[float, float],
    ) -> T:
        import requests

        from airflow_provider_vidgen.hooks._transport import RecordingAdapter, recording

        settings = self.settings
        url = settings.base_url + path
        what = f"{method} {path}"
        session = self.get_conn()
        if create:
            # A create always goes out on a new connection: a kept-alive one that the server closed
            # meanwhile would take the request's bytes and then fail, leaving the outcome unknown.
            adapter = session.get_adapter(url)
            if isinstance(adapter, RecordingAdapter):
                adapter.drop_idle_connections()
        with recording() as record:
            try:
                response = session.request(method, url, json=json, timeout=timeouts, allow_redirects=False)
            except (requests.RequestException, ValueError, OSError) as exc:
                raise self._transport_error(exc, record, what, create) from None
        try:
            return self._read_answer(response, parse, what, create)
        except VidgenError:
            raise
        except Exception as exc:
            if not create:
                raise
            # Anything unexpected while reading a create's answer: the server did answer, so it acted.
            reason = (
                f"{what}: {type(exc).__name__} while reading the answer: {protocol.redact(str(exc), settings.api_key)}"
            )
            raise VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(reason)) from None

    def _read_answer(
        self, response: requests.Response, parse: Callable[[int, str, str], T], what: str, create: bool
    ) -> T:
        settings = self.settings
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
            except VidgenAPIError as err:
                if create and not protocol.create_refused(err):
                    # An error envelope whose code does not say "refused": a task may exist.
                    raise VidgenCreateOutcomeUnknownError(
                        self._unknown_outcome_message(f"{err} (this code does not say that nothing was created)")
                    ) from None
                raise
        if create and 300 <= status < 400:
            # A server may answer a POST it processed with a redirect (303, or 302 as in POST-redirect-GET).
            raise VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(str(error)))
        if not isinstance(error, VidgenTransientError):
            raise error
        if create and status not in (protocol.RATE_LIMITED, protocol.REQUEST_TIMEOUT):
            # A 5xx after the request was sent: the task may exist.
            raise VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(str(error)))
        raise _Retry(str(error), status, retry_after)

    def _transport_error(self, exc: BaseException, record: SendRecord, what: str, create: bool) -> VidgenError:
        """The error for a request that got no answer, classified by how far the request got.

        Nothing is known to have reached the server unless a byte of the request was handed to the
        socket (``record.bytes_sent``): before that (DNS failure, connection refused, connect
        timeout, a TLS handshake that failed or stalled), sending again is safe, also for a create.
        From then on (a TLS stream or connection broken while the answer is read, a read timeout,
        an answer that cannot be parsed) a create's outcome is unknown.
        """
        settings = self.settings
        reason = f"{what}: {type(exc).__name__}: {protocol.redact(str(exc), settings.api_key)}"
        if record.refused == "cert_verify":
            # requests found no usable CA bundle or client certificate (e.g. REQUESTS_CA_BUNDLE names a
            # missing file): nothing was sent, and every retry would fail the same way.
            return VidgenConfigError(f"{reason} - nothing was sent; check the CA bundle / certificate settings")
        if record.refused is not None:
            # A proxy URL (HTTPS_PROXY...) or URL requests cannot use: nothing was sent. Its text may
            # quote a proxy's credentials, so only the class is named.
            return VidgenConfigError(
                f"{what}: the request could not be sent ({type(exc).__name__}: the proxy or URL settings are "
                f"invalid) - nothing was sent; check the connection's Base URL and the proxy environment variables"
            )
        before_sending = not record.dispatched or (
            record.instrumented and not record.connecting and not record.bytes_sent
        )
        if isinstance(exc, ValueError) and before_sending:
            # Refused by the client before anything was sent: a configuration problem, never retried.
            return VidgenConfigError(
                f"{what}: the request could not be built ({type(exc).__name__}); check the connection"
            )
        if not record.instrumented and not _unsent_by_class(exc):
            # The request did not go through the recording connections (e.g. a SOCKS proxy): only
            # the failures whose class proves that no connection was made count as "nothing sent".
            return (
                _Retry(reason) if not create else VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(reason))
            )
        if not record.bytes_sent:
            if _speaks_plain_http(exc):
                # Every retry would fail the same way, and nothing was sent: say what to change.
                return VidgenConfigError(f"{reason} - {PLAIN_HTTP_HINT}")
            stage = "during the TLS handshake" if record.connecting and not record.connected else "before sending"
            return _Retry(f"{reason} (failed {stage}: nothing was sent, so sending again is safe)")
        if not create:
            return _Retry(reason)
        return VidgenCreateOutcomeUnknownError(self._unknown_outcome_message(reason))

    def _unknown_outcome_message(self, reason: str) -> str:
        return (
            f"{reason} - the create request was sent but its outcome is unknown: a generation may have been "
            f"created and billed. It was not resent (the API has no idempotency key). Check the provider's "
            f"dashboard or billing for a task created just now before running this task again."
        )

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
