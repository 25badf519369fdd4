"""VideoGenerationSensor.poke against the emulator: each state, transient faults, the failure budget."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenGenerationFailedError,
    VidgenTransientError,
)
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline


def create(emulator: Emulator, timeline: Timeline) -> str:
    emulator.queue_timeline(timeline)
    return VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=6))


def sensor(generation_id: str, **kwargs: Any) -> VideoGenerationSensor:
    return VideoGenerationSensor(task_id="wait", generation_id=generation_id, poke_interval=1, **kwargs)


def test_queued_processing_completed(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=10, processing_for=10, actual_duration=6.0))
    s = sensor(generation_id)
    assert s.poke(context) is False  # queued
    emulator_conn.advance(10)
    assert s.poke(context) is False  # processing
    emulator_conn.advance(10)
    done = s.poke(context)
    assert done
    assert done.is_done  # type: ignore[union-attr]
    xcom = done.xcom_value  # type: ignore[union-attr]
    assert set(xcom) == {"id", "status", "model", "created", "video_url", "actual_duration", "error"}
    assert xcom["id"] == generation_id
    assert xcom["status"] == "completed"
    assert xcom["model"] == "videos"
    assert xcom["actual_duration"] == 6.0
    assert xcom["video_url"].startswith(emulator_conn.download_base_url)
    assert xcom["error"] is None


def test_failed_fails_the_task_with_api_error(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0, outcome="failed", error="nsfw"))
    with pytest.raises(VidgenGenerationFailedError, match="nsfw"):
        sensor(generation_id).poke(context)


def test_unknown_status_keeps_waiting(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="unknown_status", value="succeeded", endpoint="result"))
    s = sensor(generation_id)
    assert s.poke(context) is False
    assert s.poke(context).is_done  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, endpoint="result", times=6),
        Fault(kind="status", status=429, retry_after="0", endpoint="result", times=6),
        Fault(kind="drop", endpoint="result", times=6),
    ],
    ids=["503", "429", "dropped"],
)
def test_transient_faults_keep_the_wait_alive(
    emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=1))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(fault)
    s = sensor(generation_id, max_consecutive_failures=3)
    assert [s.poke(context) for _ in range(3)] == [False, False, False]  # 2 requests per poke, all failing
    assert s.poke(context).is_done  # type: ignore[union-attr]
    assert len(emulator_conn.requests_to("result")) == 7


def test_budget_spent_fails(emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    generation_id = create(emulator_conn, Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=100))
    s = sensor(generation_id, max_consecutive_failures=2)
    assert s.poke(context) is False
    assert s.poke(context) is False
    with pytest.raises(VidgenTransientError, match="3 consecutive failed polls"):
        s.poke(context)


def test_bad_key_fails_at_once(
    emulator_conn: Emulator, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps({"conn_type": "vidgen", "host": emulator_conn.base_url, "password": "nope"}),
    )
    with pytest.raises(VidgenAuthError):
        sensor("proj_1").poke(context)
    assert len(emulator_conn.requests) == 1


def test_generation_id_is_templated() -> None:
    assert "generation_id" in VideoGenerationSensor.template_fields
    assert "vidgen_conn_id" in VideoGenerationSensor.template_fields


def test_reschedule_mode_carries_the_wait_over_in_the_task_state_store(
    emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, log_text: Any
) -> None:
    from tests.conftest import FakeTI, conn_json
    from tests.test_durable import FakeStore

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    generation_id = create(emulator_conn, Timeline(queued_for=10, processing_for=10))
    store = FakeStore()
    ti = FakeTI()
    ti.try_number = 1  # type: ignore[attr-defined]

    def poke() -> Any:  # every poke of a rescheduled sensor is a new instance (a new process)
        s = VideoGenerationSensor(
            task_id="wait", generation_id=generation_id, mode="reschedule", max_consecutive_failures=1
        )
        return s.poke({"ti": ti, "task_state_store": store})

    assert poke() is False  # queued
    emulator_conn.advance(10)
    assert poke() is False  # processing: logged as a change, with the time since the first poke
    assert "queued -> processing after" in log_text()
    emulator_conn.add_fault(Fault(kind="status", status=500, endpoint="result", times=2))
    assert poke() is False  # one failed poke: within the budget of 1
    with pytest.raises(VidgenTransientError, match="2 consecutive failed polls"):
        poke()  # the budget counted across pokes
    assert store.data["vidgen_wait"]["last_status"] == "processing"
