"""The README's table "Outcomes in every mode", tested whole: mode x outcome x flag.

Modes: ``poke`` (Airflow's own poke loop), ``reschedule`` (Airflow's loop, one new sensor per poke, as
in a new process) and deferrable (the check, the real trigger's run(), then Airflow's
``resume_execution`` on a new sensor instance). Outcomes come from the emulator. Flags: none,
``soft_fail``, ``never_fail``, ``silent_fail`` (both Airflow 2.11 and 3.3 have all three).
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from airflow.exceptions import AirflowRescheduleException
from airflow.providers.common.compat.sdk import AirflowSkipException, TaskDeferred

from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenGenerationFailedError,
    VidgenNotFoundError,
    VidgenSensorTimeoutError,
    VidgenTransientError,
)
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger
from tests.conftest import FakeTI, conn_json

SKIPPED = "skipped"
SUCCESS = "success"
FLAGS = ("none", "soft_fail", "never_fail", "silent_fail")

#: outcome -> the result for each flag, in FLAGS order. The README's table, row by row.
TABLE: dict[str, tuple[Any, Any, Any, Any]] = {
    "completed": (SUCCESS, SUCCESS, SUCCESS, SUCCESS),
    "failed": (VidgenGenerationFailedError, SKIPPED, SKIPPED, VidgenGenerationFailedError),
    "rejected_key": (VidgenAuthError, SKIPPED, SKIPPED, VidgenAuthError),
    "unknown_id": (VidgenNotFoundError, SKIPPED, SKIPPED, VidgenNotFoundError),
    "timeout": (VidgenSensorTimeoutError, SKIPPED, SKIPPED, VidgenSensorTimeoutError),
    # silent_fail: failed polls never end the wait; only the timeout does.
    "budget_spent": (VidgenTransientError, SKIPPED, SKIPPED, VidgenSensorTimeoutError),
}

#: A wait that ends by timing out uses this timeout; the others a long one, so that a sensor that
#: kept polling an ended generation (silent_fail) would end in a timeout, not the expected result.
SHORT_TIMEOUT = 0.5
LONG_TIMEOUT = 60.0


def _first_read_answers_normally(emulator: Emulator, fault: Fault) -> None:
    # The first read (the check before deferring, the first poke) is answered; the fault applies
    # to every later one, so the deferrable mode meets it in the trigger.
    emulator.add_fault(Fault(kind="delay", delay=0, endpoint="result", times=1))
    emulator.add_fault(fault)


def arrange(outcome: str, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> tuple[str, float]:
    """Make the emulator produce ``outcome``; return the generation id and the sensor timeout."""
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator, max_retries=0))
    timelines = {
        "completed": Timeline(queued_for=0.15, processing_for=0),
        "failed": Timeline(queued_for=0.15, processing_for=0, outcome="failed", error="policy"),
    }
    emulator.queue_timeline(timelines.get(outcome, Timeline(queued_for=3600)))
    generation_id = VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=5))
    if outcome == "rejected_key":
        _first_read_answers_normally(emulator, Fault(kind="status", status=401, endpoint="result", times=10_000))
    elif outcome == "unknown_id":
        _first_read_answers_normally(emulator, Fault(kind="status", status=404, endpoint="result", times=10_000))
    elif outcome == "budget_spent":
        _first_read_answers_normally(emulator, Fault(kind="status", status=500, endpoint="result", times=10_000))
    short = outcome == "timeout" or (outcome == "budget_spent")
    return generation_id, SHORT_TIMEOUT if short else LONG_TIMEOUT


def make_sensor(generation_id: str, flag: str, timeout: float, **kwargs: Any) -> VideoGenerationSensor:
    flags = {flag: True} if flag != "none" else {}
    return VideoGenerationSensor(
        task_id="wait",
        generation_id=generation_id,
        poke_interval=0.05,
        timeout=timeout,
        max_consecutive_failures=0,  # the first failed poll spends the budget
        **flags,
        **kwargs,
    )


def run_poke(new: Callable[..., VideoGenerationSensor], context: dict[str, Any], _: Any) -> Any:
    return new(mode="poke").execute(context)


def run_reschedule(
    new: Callable[..., VideoGenerationSensor], context: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Any:
    first_poke = datetime.datetime.now(datetime.timezone.utc)
    ti = context["ti"]
    ti.try_number, ti.max_tries, ti.dag_id, ti.run_id = 1, 0, "dag", "run"
    ti.get_first_reschedule_date = lambda _context: first_poke  # Airflow 3: what the sensor's timeout counts from
    try:
        import airflow.sensors.base as airflow2_sensor  # Airflow 2: the same, read from the database

        monkeypatch.setattr(airflow2_sensor, "_orig_start_date", lambda **_: first_poke, raising=False)
    except ImportError:
        pass
    for _ in range(10_000):  # every poke is a new sensor (a new process); bounded
        try:
            return new(mode="reschedule").execute(context)
        except AirflowRescheduleException:
            continue
    raise AssertionError("the rescheduled sensor never ended")


def run_deferrable(new: Callable[..., VideoGenerationSensor], context: dict[str, Any], _: Any) -> Any:
    try:
        return new(deferrable=True).execute(context)
    except TaskDeferred as deferred:
        trigger, method_name = deferred.trigger, deferred.method_name
    assert isinstance(trigger, VideoGenerationTrigger)
    assert method_name == "execute_complete"
    kwargs = trigger.serialize()[1]
    json.dumps(kwargs)  # primitives only, as stored in the database

    async def events() -> list[Any]:
        return [event.payload async for event in VideoGenerationTrigger(**kwargs).run()]

    (event,) = asyncio.run(asyncio.wait_for(events(), 60))
    # As Airflow resumes a task: a new instance, through resume_execution (which applies Airflow's own rules).
    return new(deferrable=True).resume_execution("execute_complete", {"event": event}, context)


MODES = {"poke": run_poke, "reschedule": run_reschedule, "deferrable": run_deferrable}


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("outcome", list(TABLE))
@pytest.mark.parametrize("mode", list(MODES))
def test_outcome_table(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str, outcome: str, flag: str
) -> None:
    expected = TABLE[outcome][FLAGS.index(flag)]
    generation_id, timeout = arrange(outcome, emulator_conn, monkeypatch)
    context: dict[str, Any] = {"ti": FakeTI()}

    def new(**kwargs: Any) -> VideoGenerationSensor:
        return make_sensor(generation_id, flag, timeout, **kwargs)

    run = MODES[mode]
    if expected == SUCCESS:
        xcom = run(new, context, monkeypatch)
        assert xcom["id"] == generation_id
        assert xcom["status"] == "completed"
        assert xcom["video_url"].startswith(emulator_conn.download_base_url)
        return
    with pytest.raises(Exception) as info:  # noqa: PT011 - the exact class is checked below
        run(new, context, monkeypatch)
    if expected == SKIPPED:
        assert type(info.value) is AirflowSkipException, repr(info.value)
        assert generation_id in str(info.value)
    else:
        assert type(info.value) is expected, repr(info.value)
        assert generation_id in str(info.value) or outcome in ("rejected_key", "unknown_id")


def test_table_is_complete() -> None:
    assert len(TABLE) * len(FLAGS) * len(MODES) == 72
    assert all(len(row) == len(FLAGS) for row in TABLE.values())
