"""Operators that create Videos and StarVideos generations (and optionally wait for them)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_vidgen import lineage, protocol
from airflow_provider_vidgen.durable import (
    STATE_KEY,
    Decision,
    decide,
    failed_record,
    in_flight_record,
    request_fingerprint,
    stored_record,
)
from airflow_provider_vidgen.exceptions import (
    VidgenCreateOutcomeUnknownError,
    VidgenError,
    VidgenGenerationFailedError,
    VidgenStateNotRecordedError,
    VidgenValidationError,
)
from airflow_provider_vidgen.families import STARVIDEOS, VIDEOS, CreateRequest, Family
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.links import VideoLink
from airflow_provider_vidgen.models import GenerationResult, StarVideosRequest
from airflow_provider_vidgen.saving import (
    IF_EXISTS,
    VideoSaver,
    VidgenDestinationError,
    as_storage_path,
    keep_existing,
    record_asset_events,
)
from airflow_provider_vidgen.waiting import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    GenerationWait,
    check_then_defer,
    pushes_only_its_return_value,
    wait_for_generation,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: XCom keys pushed by the create operators (besides ``return_value``, the generation id).
XCOM_GENERATION_ID = "generation_id"
XCOM_VIDEO_URL = "video_url"
XCOM_ACTUAL_DURATION = "actual_duration"
XCOM_OUTPUT = "output"

DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_TIMEOUT = timedelta(hours=1)
#: Default of the create operators' ``adaptive_polling``.
DEFAULT_ADAPTIVE_POLLING = False


def generation_mode(request: Any) -> str:
    """What a create request generates from: ``text``, ``image``, ``first-last-frame`` or ``references``."""
    if getattr(request, "reference_images", None) or getattr(request, "reference_videos", None):
        return "references"
    images = list(getattr(request, "images", None) or [])[:2]
    if getattr(request, "image", None):
        images.insert(0, request.image)
    if getattr(request, "last_frame_image", None):
        images.append(request.last_frame_image)
    return ("text", "image")[len(images)] if len(images) < 2 else "first-last-frame"


def _seconds(value: float | timedelta) -> float:
    """A checked ``poll_interval`` / ``timeout`` as seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _is_templated(value: Any) -> bool:
    """Whether ``value`` will only be known after rendering (Jinja text or an XComArg...)."""
    if value is None or isinstance(value, (bool, int, float)):
        return False
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, (list, tuple)):
        return any(_is_templated(item) for item in value)
    return True


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_positive_duration(value: Any) -> bool:
    if isinstance(value, timedelta):
        return value.total_seconds() > 0
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_conn_id(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_if_exists(value: Any) -> bool:
    return isinstance(value, str) and value in IF_EXISTS


def _is_destination(value: Any) -> bool:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(value, ObjectStoragePath):
        return True
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return isinstance(value, str) and bool(value.strip())


def _is_optional_destination(value: Any) -> bool:
    return value is None or _is_destination(value)


def _is_generation_id(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and value.strip().isprintable()


#: Each operator option, the rule it must follow and the check (the request parameters are the models').
OptionRules = Mapping[str, tuple[str, Callable[[Any], bool]]]
_CREATE_OPTION_RULES: OptionRules = {
    "vidgen_conn_id": ("a non-empty connection id (str)", _is_conn_id),
    "wait_for_completion": ("True or False", _is_bool),
    "poll_interval": ("a positive number of seconds or a timedelta", _is_positive_duration),
    "timeout": ("a positive number of seconds or a timedelta", _is_positive_duration),
    "max_consecutive_failures": ("a whole number >= 0 (int)", _is_count),
    "deferrable": ("True or False", _is_bool),
    "durable": ("True or False", _is_bool),
    "retry_on_unknown_create_outcome": ("True or False", _is_bool),
    "output_path": ("None, a URI, a local path or an ObjectStoragePath", _is_optional_destination),
    "if_output_exists": (f"one of {', '.join(IF_EXISTS)}", _is_if_exists),
    "adaptive_polling": ("True or False", _is_bool),
    "poll_backoff_when_late": ("True or False", _is_bool),
}
_DOWNLOAD_OPTION_RULES: OptionRules = {
    "generation_id": ("a non-empty generation id (str, no control characters)", _is_generation_id),
    "destination": ("a URI, a local path or an ObjectStoragePath", _is_destination),
    "vidgen_conn_id": ("a non-empty connection id (str)", _is_conn_id),
    "if_exists": (f"one of {', '.join(IF_EXISTS)}", _is_if_exists),
}


def _check_options(values: Mapping[str, Any], rules: OptionRules, templated: set[str]) -> None:
    """Check each option in ``values`` against its rule; skip the ``templated`` ones (not rendered yet).

    :raises VidgenValidationError: naming every option that breaks its rule (before anything is sent).
    """
    problems = [
        f"{name}: must be {rules[name][0]} (got {_short(value)})"
        for name, value in values.items()
        if name in rules and name not in templated and not rules[name][1](value)
    ]
    if problems:
        raise VidgenValidationError("Invalid operator options: " + "; ".join(problems))


def _check_one_file_per_mapped_task(values: Mapping[str, Any], name: str, templated: set[str]) -> None:
    """Refuse a destination given to ``partial()`` as a plain value: every mapped task would write that one file.

    :raises VidgenValidationError: ``name`` is set, not templated, in the arguments of ``partial()``.
    """
    value = values.get(name)
    if value is None or name in templated:
        return
    raise VidgenValidationError(
        f"Invalid operator options: {name}: the same file for every mapped task (got {_short(value)}): each "
        f"task would save its video there, over the others' (each one billed). Give {name} to expand() "
        f"or template it per task, e.g. with {{{{ ti.map_index }}}}"
    )


def _check_backoff_needs_adaptive(values: Mapping[str, Any]) -> None:
    """``poll_backoff_when_late`` acts on the learned completion times, which only ``adaptive_polling`` uses.

    :raises VidgenValidationError: ``poll_backoff_when_late=True`` without ``adaptive_polling=True``.
    """
    if (
        values.get("poll_backoff_when_late") is True
        and values.get("adaptive_polling", DEFAULT_ADAPTIVE_POLLING) is not True
    ):
        raise VidgenValidationError(
            "Invalid operator options: poll_backoff_when_late: needs adaptive_polling=True (it backs off once "
            "a generation is far past the completion times adaptive polling learns)"
        )


def _templated_names(values: Mapping[str, Any], template_fields: Collection[str]) -> set[str]:
    return {name for name in template_fields if name in values and _is_templated(values[name])}


def check_local_output_writable(output: Any) -> None:
    """Fail before the create when a local ``output_path`` cannot be written.

    The folder is created (as the saver would) and a probe file is written in it and removed, so a
    folder on a read-only mount, on a pseudo-filesystem, or without permission fails here, before anything
    is billed, not after the generation was paid and waited for. Object stores are not probed (a write
    there costs a request and needs a delete permission); their errors come when the video is saved.

    :raises VidgenDestinationError: the folder cannot be created or written (nothing was created).
    """
    import tempfile
    from pathlib import Path

    if getattr(output, "protocol", None) not in ("file", "local"):
        return
    folder = Path(output.path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vidgen-write-check-"):
            pass
    except OSError as err:
        raise VidgenDestinationError(
            f"output_path {output}: cannot write in {folder} ({type(err).__name__}: {err.strerror or err}); "
            f"nothing was created or billed"
        ) from None


#: Whether the "no task_state_store" warning was logged in this process (it is logged once).
_warned_no_state_store = False


class _VidgenCreateOperator(BaseOperator):
    """Shared behaviour of the create operators: validate, create, push the id, optionally wait.

    Subclasses set ``family`` (the API family, :mod:`airflow_provider_vidgen.families`: its request
    model, endpoint and create answer) and ``request_fields`` (the operator attributes that make up
    the request, named as the request model's fields), and document those request parameters.

    XCom: ``return_value`` and ``generation_id`` = the generation id, pushed right after creation;
    with ``wait_for_completion``, also ``video_url`` and ``actual_duration``; with ``output_path``,
    also ``output`` (the saved video's manifest).

    The options of every create operator:

    :param vidgen_conn_id: Airflow connection of type ``vidgen``. Templated.
    :param wait_for_completion: Wait until the generation is ``completed`` (or fail if ``failed``).
    :param poll_interval: Seconds between status reads while waiting (API advice: 30-60).
    :param timeout: Longest wait, seconds or ``timedelta``; then the task fails, naming the id.
    :param max_consecutive_failures: Transient status-read failures tolerated in a row while waiting.
    :param deferrable: Wait in the triggerer instead of the worker (with ``wait_for_completion``).
        Default: Airflow's ``[operators] default_deferrable``.
    :param durable: Record each create in the task_state_store (Airflow >= 3.3), before it is sent and
        with its id after, so a later try of this task instance reconnects to it or reuses it instead
        of creating (billing) another.
    :param retry_on_unknown_create_outcome: When a create may or may not have created a generation
        (read timeout, 5xx, or an earlier try that ended while its create was under way), let Airflow
        retry the task and the retry create again (which may bill twice) instead of failing it
        without retries.
    :param output_path: Save the finished video here (URI, local path or ``ObjectStoragePath``);
        implies waiting for completion; the manifest is pushed as XCom ``output``. Templated.
    :param if_output_exists: When ``output_path`` exists as the task starts: ``skip`` (create nothing,
        bill nothing, push the existing object's manifest), ``overwrite`` or ``fail``.
    :param adaptive_polling: Put off the first status read until generations of this kind (family,
        model, duration, mode) can be finished, as learned from the completions this process (the
        triggerer, when deferrable) has seen; then read every ``poll_interval`` as before. Without an
        estimate yet: the fixed schedule. See the README's "Adaptive polling".
    :param poll_backoff_when_late: Let the interval between reads grow towards 60 s once the
        generation is far past the time generations of its kind take (needs ``adaptive_polling``).
    """

    family: ClassVar[Family]
    request_fields: ClassVar[tuple[str, ...]]
    ui_color = "#f3e5f5"
    operator_extra_links = (VideoLink(),)

    def __init__(
        self,
        *,
        vidgen_conn_id: str = VidgenHook.default_conn_name,
        wait_for_completion: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        durable: bool = True,
        retry_on_unknown_create_outcome: bool = False,
        output_path: Any = None,
        if_output_exists: str = "skip",
        adaptive_polling: bool = DEFAULT_ADAPTIVE_POLLING,
        poll_backoff_when_late: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        options = {
            "vidgen_conn_id": vidgen_conn_id,
            "wait_for_completion": wait_for_completion,
            "poll_interval": poll_interval,
            "timeout": timeout,
            "max_consecutive_failures": max_consecutive_failures,
            "deferrable": deferrable,
            "durable": durable,
            "retry_on_unknown_create_outcome": retry_on_unknown_create_outcome,
            "output_path": output_path,
            "if_output_exists": if_output_exists,
            "adaptive_polling": adaptive_polling,
            "poll_backoff_when_late": poll_backoff_when_late,
        }
        _check_options(options, _CREATE_OPTION_RULES, _templated_names(options, self.template_fields))
        _check_backoff_needs_adaptive(options)
        self.durable = durable
        self.retry_on_unknown_create_outcome = retry_on_unknown_create_outcome
        self.output_path = output_path
        self.if_output_exists = if_output_exists
        self.vidgen_conn_id = vidgen_conn_id
        self.wait_for_completion = wait_for_completion
        self.poll_interval = _seconds(poll_interval)
        self.timeout = _seconds(timeout)
        self.max_consecutive_failures = max_consecutive_failures
        self.deferrable = deferrable
        self.adaptive_polling = adaptive_polling
        self.poll_backoff_when_late = poll_backoff_when_late

    def _validate_options(self, *, rendered: bool) -> None:
        """Check every operator option: when built (a DAG import error) and after rendering, before the create.

        Templated options (``vidgen_conn_id``, ``output_path``) that are not rendered yet wait for
        run time. Nothing between the create and the end of the task depends on an unchecked option.
        """
        values = {name: getattr(self, name) for name in _CREATE_OPTION_RULES}
        _check_options(
            values, _CREATE_OPTION_RULES, set() if rendered else _templated_names(values, self.template_fields)
        )

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``BaseOperator.partial``, with the arguments known at parse time checked now (a DAG import error).

        Fields left to ``expand()`` / ``expand_kwargs()`` (or to their defaults) are unknown here and
        are checked when Airflow builds each mapped task, before anything is created.
        """
        default_args = kwargs.get("default_args")
        values = {**(default_args if isinstance(default_args, dict) else {}), **kwargs}
        templated = _templated_names(values, cls.template_fields)
        _check_options(values, _CREATE_OPTION_RULES, templated)
        _check_backoff_needs_adaptive(values)
        _check_one_file_per_mapped_task(values, "output_path", templated)
        params = {name: values[name] for name in cls.request_fields if name in values}
        unknown = (set(cls.request_fields) - set(params)) | _templated_names(params, cls.template_fields)
        cls.family.request_class.check_known(params, unknown)
        return super().partial(**kwargs)

    def _validate_if_static(self) -> None:
        # Every value known now (no Jinja, no XComArg) is checked now, so a mistake is a DAG import
        # error. Jinja in a field that is not templated is never rendered: it fails here too.
        params = {name: getattr(self, name) for name in self.request_fields}
        unknown = {name for name in set(self.template_fields) & set(params) if _is_templated(params[name])}
        self.family.request_class.check_known(params, unknown)

    def build_request(self) -> CreateRequest:
        """Validate the (rendered) parameters into the family's request model.

        :raises VidgenValidationError: a parameter breaks a rule of the API (no request is sent).
        """
        request: CreateRequest = self.family.request_class.build(
            **{name: getattr(self, name) for name in self.request_fields}
        )
        return request

    @cached_property
    def hook(self) -> VidgenHook:
        """The hook for ``vidgen_conn_id`` (created after templates are rendered)."""
        return VidgenHook(vidgen_conn_id=self.vidgen_conn_id)

    def execute(self, context: Context) -> str | None:
        try:
            return self._create_and_maybe_wait(context)
        finally:
            self.hook.close()

    def _create_and_maybe_wait(self, context: Context) -> str | None:
        request, output = self._prepare()
        kept = self._existing_output(output)
        if kept is not None:
            self._keep_existing_output(context, output, kept)
            return None
        decision, generation_id = self._create_or_reconnect(request, context)
        self._push_generation_id(context, generation_id)
        if not self.wait_for_completion and output is None:
            return generation_id
        self._push_result(context, self._finished_result(decision, generation_id))
        return generation_id

    def _prepare(self) -> tuple[CreateRequest, Any]:
        """The request and the ``output_path`` (or ``None``), from the rendered options.

        Everything that can be wrong in the configuration fails here, before anything is billed.
        """
        self._validate_options(rendered=True)
        request = self.build_request()
        output = as_storage_path(self.output_path) if self.output_path else None
        self._schedule_key = self._schedule_key_of(request) if self.adaptive_polling else None
        return request, output

    def _schedule_key_of(self, request: CreateRequest) -> str:
        """The kind of generation the wait learns its schedule under: family, model, duration, mode."""
        from airflow_provider_vidgen.completion_times import schedule_key

        return schedule_key(self.family.key, request.model, self.family.seconds(request), generation_mode(request))

    def _existing_output(self, output: Any) -> dict[str, Any] | None:
        """The manifest of an ``output`` to keep (``if_output_exists='skip'``), else ``None``.

        An ``output`` to write (a local one is checked to be writable) or no ``output`` gives ``None``.
        """
        if output is None:
            return None
        kept = keep_existing(output, self.if_output_exists, "if_output_exists")
        if kept is None:
            check_local_output_writable(output)
        return kept

    def _keep_existing_output(self, context: Context, output: Any, kept: dict[str, Any]) -> None:
        """End without creating: push the kept object's manifest as if it had just been saved."""
        self.log.info("%s already exists (if_output_exists='skip'): nothing created, nothing billed", output)
        context["ti"].xcom_push(key=XCOM_OUTPUT, value=kept)
        lineage.note(self, manifest=kept)
        record_asset_events(context, self.outlets, kept)  # Airflow emits them anyway

    def _create_or_reconnect(self, request: CreateRequest, context: Context) -> tuple[Decision, str]:
        """The durable decision and the generation id: an earlier try's (reconnect, reuse) or a new one's."""
        store = self._state_store(context)
        fingerprint = request_fingerprint(request)
        decision = self._durable_decision(store, fingerprint)
        if decision.generation_id is not None:
            return decision, decision.generation_id
        return decision, self._create(request, store, fingerprint, context)

    def _durable_decision(self, store: Any, fingerprint: str) -> Decision:
        """Before anything is billed: did an earlier try of this task instance create (or send) one?"""
        decision = decide(
            store.get(STATE_KEY) if store is not None else None,
            fingerprint,
            self.hook.get_result,
            retry_on_unknown_create_outcome=self.retry_on_unknown_create_outcome,
        )
        if store is not None:
            self.log.info("Durable create: %s", decision.reason)
        return decision

    def _push_generation_id(self, context: Context, generation_id: str) -> None:
        """Push the id (XCom ``generation_id``) before any waiting, so it survives a later failure of this task."""
        context["ti"].xcom_push(key=XCOM_GENERATION_ID, value=generation_id)
        lineage.note(self, generation_id=generation_id)

    def _finished_result(self, decision: Decision, generation_id: str) -> GenerationResult:
        """The completed result: the one a reuse decision read, else waited for (in the triggerer when deferrable)."""
        if decision.action == "reuse" and decision.result is not None:
            return decision.result
        if self.deferrable:
            # Just created in this try: it cannot be finished yet, so no read before deferring.
            return self._check_then_defer(generation_id, check=decision.action != "create")
        return wait_for_generation(
            self.hook.get_result,
            generation_id,
            poll_interval=self.poll_interval,
            timeout=self.timeout,
            max_consecutive_failures=self.max_consecutive_failures,
            log=self.log,
            schedule_key=getattr(self, "_schedule_key", None),
            backoff_when_late=self.poll_backoff_when_late,
        )

    def _state_store(self, context: Context) -> Any:
        """The task_state_store when ``durable`` (Airflow >= 3.3), else ``None`` (with a warning, once per process)."""
        global _warned_no_state_store
        if not self.durable:
            return None
        store = context.get("task_state_store")
        if store is None and not _warned_no_state_store:
            _warned_no_state_store = True
            self.log.warning(
                "durable=True, but this Airflow has no task_state_store (added in Airflow 3.3): "
                "a retry of this task may create (and bill) a new generation. Logged once per process; "
                "durable=False silences it"
            )
        return store

    def _create(self, request: CreateRequest, store: Any, fingerprint: str, context: Context) -> str:
        """Send the create, with the in-flight marker written before and the id (or nothing) after."""
        self.log.info("Creating %s generation: %s", self.family.display_name, request.summary())
        if store is not None:
            # Before sending: a try that dies while the create is under way leaves this trace, so the
            # next try does not create blindly.
            try:
                store.set(STATE_KEY, in_flight_record(fingerprint))
            except Exception as err:
                raise VidgenError(
                    f"Could not record the create in the task_state_store before sending it "
                    f"({type(err).__name__}: {err}); nothing was sent, nothing billed"
                ) from err
        try:
            generation_id = self.hook.create(request)
        except VidgenGenerationFailedError as err:
            # The API created the task and answered it failed at once: billed, recorded, failed.
            self._push_generation_id(context, err.generation_id)
            if store is not None:
                self._record(store, failed_record(err.generation_id, fingerprint, err.api_error))
            raise
        except VidgenCreateOutcomeUnknownError as err:
            # The marker stays: a later try finds it and does not create blindly.
            if not self.retry_on_unknown_create_outcome:
                raise  # fails the task without Airflow retries
            raise VidgenError(
                f"{err} Airflow may retry this task (retry_on_unknown_create_outcome=True): "
                f"the retry may create and bill a second generation."
            ) from err
        except VidgenError:
            # Any other error of the hook: provably nothing was created, so a retry may create.
            if store is not None:
                self._clear_marker(store)
            raise
        self.log.info("Created %s generation %s", self.family.display_name, generation_id)
        if store is not None:
            # Stored before any waiting or deferring, so every later try finds it.
            try:
                store.set(STATE_KEY, stored_record(generation_id, fingerprint))
            except Exception as err:
                context["ti"].xcom_push(key=XCOM_GENERATION_ID, value=generation_id)
                raise VidgenStateNotRecordedError(
                    f"Generation {generation_id} was created (and billed) but could not be recorded in the "
                    f"task_state_store ({type(err).__name__}: {err}); failing without retries so a retry does "
                    f"not create another one. Wait for it with VideoGenerationSensor(generation_id="
                    f"{generation_id!r})."
                ) from err
        return generation_id

    def _record(self, store: Any, record: dict[str, Any]) -> None:
        try:
            store.set(STATE_KEY, record)
        except Exception as err:  # the in-flight marker stays: a retry will not create blindly
            self.log.warning("Could not record generation %s in the task_state_store: %s", record["generation_id"], err)

    def _clear_marker(self, store: Any) -> None:
        try:
            store.delete(STATE_KEY)
        except Exception as err:  # the marker stays: a retry fails as "outcome unknown" rather than paying twice
            self.log.warning("Could not clear the in-flight create marker in the task_state_store: %s", err)

    def _check_then_defer(self, generation_id: str, *, check: bool = True) -> GenerationResult:
        """Check once (unless ``check`` is off): return the result if already completed, else defer to the trigger."""
        wait = GenerationWait(
            generation_id,
            poll_interval=self.poll_interval,
            timeout=self.timeout,
            max_consecutive_failures=self.max_consecutive_failures,
            log=self.log,
            clock=time.time,  # its state goes to the trigger: on the wall clock
            schedule_key=getattr(self, "_schedule_key", None),
            backoff_when_late=self.poll_backoff_when_late,
        )
        # Success ends the task in the triggerer with the XComs of _push_result where Airflow supports it
        # and a worker would push just those; saving a video (blocking I/O) resumes on a worker.
        ends_here = self.output_path is None and pushes_only_its_return_value(self)
        return check_then_defer(
            self,
            wait,
            self.hook.get_result,
            vidgen_conn_id=self.vidgen_conn_id,
            success_xcoms="create" if ends_here else None,
            check=check,
        )

    def execute_complete(self, context: Context, event: Any = None) -> str:
        """Resume after the trigger: the same XComs, errors and messages as the synchronous wait."""
        from airflow_provider_vidgen.events import result_from_event

        ti = context["ti"]
        # defer() kwargs are not kept by every runner: the id comes back from this task's own XCom.
        generation_id = ti.xcom_pull(task_ids=ti.task_id, key=XCOM_GENERATION_ID, map_indexes=ti.map_index)
        if not generation_id:
            raise VidgenError(f"Cannot resume {ti.task_id}: no {XCOM_GENERATION_ID!r} XCom was pushed before deferring")
        lineage.note(self, generation_id=generation_id)
        try:
            # A completed event carries no video URL (Airflow logs the event): the result is read again here.
            result = result_from_event(event, generation_id, self.timeout, self.hook.get_result)
            self._push_result(context, result)
        finally:
            self.hook.close()
        return generation_id

    def _push_result(self, context: Context, result: GenerationResult) -> None:
        context["ti"].xcom_push(key=XCOM_VIDEO_URL, value=result.video_url)
        context["ti"].xcom_push(key=XCOM_ACTUAL_DURATION, value=result.actual_duration)
        lineage.note(self, result=result)
        self.log.info(
            "Generation %s completed: %s s of video at %s",
            result.id,
            result.actual_duration,
            protocol.url_for_log(str(result.video_url)),
        )
        if self.output_path:
            # On the worker (after a deferral too), never in the triggerer.
            manifest = VideoSaver(self.hook.settings, self.log).save(
                result.id, self.hook.get_result, as_storage_path(self.output_path), self.if_output_exists
            )
            context["ti"].xcom_push(key=XCOM_OUTPUT, value=manifest)
            lineage.note(self, manifest=manifest)
            record_asset_events(context, self.outlets, manifest)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the saved video (output), the input images / videos and the ``vidgen`` run facet."""
        return lineage.operator_lineage(self, self.output_path)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """OpenLineage of a failed try: as on completion, with what the try learnt (the id, if created)."""
        return lineage.operator_lineage(self, self.output_path)


class VideosCreateOperator(_VidgenCreateOperator):
    """Create a Videos generation; push its id (``projectId``); optionally wait for it.

    The XComs and the options every create operator has (``wait_for_completion``, ``output_path``,
    ``durable``, ...): see :class:`_VidgenCreateOperator`.

    :param prompt: What to generate; non-empty, at most 1500 characters. Templated.
    :param duration: Seconds of video, 4 to 15. Templated.
    :param model: ``videos`` (standard) or ``videos_fast``.
    :param ratio: ``16:9`` or ``9:16``.
    :param resolution: ``720p``.
    :param image: First-frame image URL (with ``last_frame_image``). Templated.
    :param last_frame_image: Last-frame image URL (with ``image``). Templated.
    :param reference_images: Up to 4 reference image URLs. Templated.
    :param reference_videos: Up to 3 reference video URLs. Templated.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "duration",
        "image",
        "last_frame_image",
        "reference_images",
        "reference_videos",
        "vidgen_conn_id",
        "output_path",
    )
    family = VIDEOS
    request_fields = (
        "model",
        "prompt",
        "duration",
        "ratio",
        "resolution",
        "image",
        "last_frame_image",
        "reference_images",
        "reference_videos",
    )

    def __init__(
        self,
        *,
        prompt: str,
        duration: int | str,
        model: str = "videos",
        ratio: str = "16:9",
        resolution: str = "720p",
        image: str | None = None,
        last_frame_image: str | None = None,
        reference_images: list[str] | None = None,
        reference_videos: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.duration = duration
        self.model = model
        self.ratio = ratio
        self.resolution = resolution
        self.image = image
        self.last_frame_image = last_frame_image
        self.reference_images = reference_images
        self.reference_videos = reference_videos
        self._validate_if_static()


class StarVideosCreateOperator(_VidgenCreateOperator):
    """Create a StarVideos generation; push its id; optionally wait for it.

    The XComs and the options every create operator has (``wait_for_completion``, ``output_path``,
    ``durable``, ...): see :class:`_VidgenCreateOperator`.

    :param prompt: What to generate; non-empty. Templated.
    :param duration: Seconds of video, 3 to 15 (default 5). Templated.
    :param model: ``starvideos_v3``.
    :param ratio: ``16:9`` or ``9:16``.
    :param images: 0 (text-to-video), 1 (single image) or 2 (first/last frame) image URLs. The API
        uses only the first 2: any more are ignored and not sent, with a warning. Templated.
    """

    template_fields: Sequence[str] = ("prompt", "duration", "images", "vidgen_conn_id", "output_path")
    family = STARVIDEOS
    request_fields = ("model", "prompt", "duration", "ratio", "images")

    def __init__(
        self,
        *,
        prompt: str,
        duration: int | str = 5,
        model: str = "starvideos_v3",
        ratio: str = "16:9",
        images: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.duration = duration
        self.model = model
        self.ratio = ratio
        self.images = images
        self._validate_if_static()

    def build_request(self) -> CreateRequest:
        """As the base class builds it; warns when images beyond the first 2 are left out (not sent)."""
        request = super().build_request()
        if isinstance(request, StarVideosRequest) and request.ignored_images:
            self.log.warning(
                "StarVideos uses only the first 2 images: %d more given, ignored and not sent", request.ignored_images
            )
        return request


class VideoDownloadOperator(BaseOperator):
    """Save a finished generation's video to object storage (before its temporary URL expires).

    Reads the result right before downloading (never trusts an old URL; an expired one is replaced by
    asking again), streams the video in chunks to a temporary object and moves it into place, checks
    ``Content-Length``, retries transient errors with backoff, and never sends the API key to the
    video host. Returns (XCom ``return_value``) the manifest
    ``generation_id, uri, bytes, sha256, content_type, actual_duration, model``. With ``outlets``
    (assets), the manifest becomes the ``extra`` of each asset event.

    :param generation_id: The generation whose video to save. Templated.
    :param destination: URI (``s3://...``, ``gs://...``, ``file://...``), plain local path, or
        ``ObjectStoragePath``. Templated.
    :param vidgen_conn_id: Airflow connection of type ``vidgen``. Templated.
    :param if_exists: ``overwrite`` (default), ``skip`` (keep the existing object, download nothing)
        or ``fail``.
    """

    template_fields: Sequence[str] = ("generation_id", "destination", "vidgen_conn_id")
    ui_color = "#ede7f6"
    operator_extra_links = (VideoLink(),)

    def __init__(
        self,
        *,
        generation_id: str,
        destination: Any,
        vidgen_conn_id: str = VidgenHook.default_conn_name,
        if_exists: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.generation_id = generation_id
        self.destination = destination
        self.vidgen_conn_id = vidgen_conn_id
        self.if_exists = if_exists
        self._validate_options(rendered=False)

    def _validate_options(self, *, rendered: bool) -> None:
        values = {name: getattr(self, name) for name in _DOWNLOAD_OPTION_RULES}
        templated = set() if rendered else _templated_names(values, self.template_fields)
        _check_options(values, _DOWNLOAD_OPTION_RULES, templated)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``BaseOperator.partial``, with the options known at parse time checked now (a DAG import error)."""
        default_args = kwargs.get("default_args")
        values = {**(default_args if isinstance(default_args, dict) else {}), **kwargs}
        templated = _templated_names(values, cls.template_fields)
        _check_options(values, _DOWNLOAD_OPTION_RULES, templated)
        _check_one_file_per_mapped_task(values, "destination", templated)
        return super().partial(**kwargs)

    def execute(self, context: Context) -> dict[str, Any]:
        self._validate_options(rendered=True)
        # Normalised once, where the id enters (a Variable or a template may add blanks around it).
        self.generation_id = generation_id = self.generation_id.strip()
        destination = as_storage_path(self.destination)
        kept = keep_existing(destination, self.if_exists, "if_exists", generation_id)
        if kept is not None:
            self.log.info("%s already exists (if_exists='skip'): nothing downloaded", destination)
            lineage.note(self, manifest=kept)
            record_asset_events(context, self.outlets, kept)  # Airflow emits them anyway
            return kept
        hook = VidgenHook(vidgen_conn_id=self.vidgen_conn_id)
        try:
            manifest = VideoSaver(hook.settings, self.log).save(
                generation_id, hook.get_result, destination, self.if_exists
            )
        finally:
            hook.close()
        lineage.note(self, manifest=manifest)
        record_asset_events(context, self.outlets, manifest)
        return manifest

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the saved video (output) and the ``vidgen`` run facet."""
        return lineage.operator_lineage(self, self.destination)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """OpenLineage of a failed try: the planned destination and the generation id."""
        return lineage.operator_lineage(self, self.destination)


__all__ = [
    "XCOM_ACTUAL_DURATION",
    "XCOM_GENERATION_ID",
    "XCOM_OUTPUT",
    "XCOM_VIDEO_URL",
    "StarVideosCreateOperator",
    "VideoDownloadOperator",
    "VideosCreateOperator",
]
