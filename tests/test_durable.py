"""Durable create operators: the decision a later try makes with what an earlier try stored.

The task_state_store is a dict here (its API: get/set); the API is the emulator. The same flows run
for real under ``airflow dags test`` in test_durable_dags.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_vidgen.durable import STATE_KEY, request_fingerprint
from airflow_provider_vidgen.exceptions import (
    VidgenCreateOutcomeUnknownError,
    VidgenError,
    VidgenTransientError,
)
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from tests.conftest import FakeTI, conn_json


class FakeStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        assert value is not None
        self.data[key] = value


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def new_try(store: FakeStore) -> dict[str, Any]:
    """A fresh context for the next try: XCom is cleared, the task_state_store is kept."""
    return {"ti": FakeTI(), "task_state_store": store}


def op(**kwargs: Any) -> VideosCreateOperator:
    params = {"task_id": "task", "prompt": "a cat", "duration": 5, "wait_for_completion": True, "poll_interval": 0.05}
    return VideosCreateOperator(**{**params, **kwargs})


def test_first_try_stores_id_and_fingerprint_before_waiting(store: FakeStore, emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    context = new_try(store)
    generation_id = op().execute(context)
    request = VideosRequest.build(model="videos", prompt="a cat", duration=5, ratio="16:9", resolution="720p")
    assert store.data[STATE_KEY] == {"generation_id": generation_id, "fingerprint": request_fingerprint(request)}


def test_retry_reconnects_to_a_generation_in_progress(store: FakeStore, emulator_conn: Emulator, log_text: Any) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.5))
    first = op(wait_for_completion=False).execute(new_try(store))
    context = new_try(store)
    assert op().execute(context) == first
    assert len(emulator_conn.creates()) == 1
    assert context["ti"].xcom["generation_id"] == first
    assert context["ti"].xcom["video_url"].startswith(emulator_conn.download_base_url)
    assert f"Durable create: reconnect: generation {first} is" in log_text()


def test_retry_after_completion_reuses_it(store: FakeStore, emulator_conn: Emulator, log_text: Any) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    first_context = new_try(store)
    first = op().execute(first_context)
    reads_before = len(emulator_conn.requests_to("result"))
    context = new_try(store)
    assert op().execute(context) == first
    assert context["ti"].xcom == first_context["ti"].xcom  # the same XComs as the first try's success
    assert len(emulator_conn.creates()) == 1
    assert len(emulator_conn.requests_to("result")) == reads_before + 1  # one read to decide, no waiting
    assert f"Durable create: reuse: generation {first} already completed" in log_text()


def test_retry_after_failure_resubmits(store: FakeStore, emulator_conn: Emulator, log_text: Any) -> None:
    emulator_conn.queue_timeline(Timeline(queued_for=0, processing_for=0, outcome="failed", error="policy"))
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    with pytest.raises(VidgenError, match="policy"):
        op().execute(new_try(store))
    failed = store.data[STATE_KEY]["generation_id"]
    second = op().execute(new_try(store))
    assert second != failed
    assert store.data[STATE_KEY]["generation_id"] == second
    assert len(emulator_conn.creates()) == 2
    assert f"Durable create: resubmit: stored generation {failed} failed: policy" in log_text()


def test_unknown_stored_id_resubmits(store: FakeStore, emulator_conn: Emulator, log_text: Any) -> None:
    request = VideosRequest.build(model="videos", prompt="a cat", duration=5, ratio="16:9", resolution="720p")
    store.data[STATE_KEY] = {"generation_id": "proj_gone", "fingerprint": request_fingerprint(request)}
    op(wait_for_completion=False).execute(new_try(store))
    assert len(emulator_conn.creates()) == 1
    assert "resubmit: stored generation proj_gone is unknown to the API" in log_text()


def test_changed_request_resubmits(store: FakeStore, emulator_conn: Emulator, log_text: Any) -> None:
    first = op(wait_for_completion=False).execute(new_try(store))
    second = op(wait_for_completion=False, prompt="a dog").execute(new_try(store))
    assert second != first
    assert len(emulator_conn.creates()) == 2
    assert "resubmit: the request changed since generation" in log_text()


def test_stored_generation_that_cannot_be_checked_is_not_replaced(
    store: FakeStore, emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=1))
    op(wait_for_completion=False).execute(new_try(store))
    emulator_conn.add_fault(Fault(kind="status", status=503, endpoint="result", times=5))
    with pytest.raises(VidgenTransientError, match="not creating another one"):
        op(wait_for_completion=False).execute(new_try(store))
    assert len(emulator_conn.creates()) == 1


def test_families_have_distinct_fingerprints() -> None:
    from airflow_provider_vidgen.models import StarVideosRequest

    videos = VideosRequest.build(model="videos", prompt="p", duration=5)
    star = StarVideosRequest.build(model="starvideos_v3", prompt="p", duration=5)
    assert request_fingerprint(videos) != request_fingerprint(star)
    assert request_fingerprint(videos) == request_fingerprint(
        VideosRequest.build(model="videos", prompt="p", duration="5")
    )


def test_durable_false_uses_no_store(store: FakeStore, emulator_conn: Emulator) -> None:
    op(wait_for_completion=False, durable=False).execute(new_try(store))
    op(wait_for_completion=False, durable=False).execute(new_try(store))
    assert store.data == {}
    assert len(emulator_conn.creates()) == 2


def test_without_task_state_store_warns_and_creates(emulator_conn: Emulator, log_text: Any) -> None:
    StarVideosCreateOperator(task_id="t", prompt="p").execute({"ti": FakeTI()})
    assert "may create (and bill) a new generation" in log_text()
    assert len(emulator_conn.creates()) == 1


def test_unknown_outcome_fails_without_retries_by_default(store: FakeStore, emulator_conn: Emulator) -> None:
    emulator_conn.add_fault(Fault(kind="status", status=502, endpoint="create"))
    with pytest.raises(VidgenCreateOutcomeUnknownError) as info:
        op().execute(new_try(store))
    assert isinstance(info.value, AirflowFailException)
    assert "outcome is unknown" in str(info.value)
    assert STATE_KEY not in store.data


def test_unknown_outcome_opt_in_to_airflow_retries(store: FakeStore, emulator_conn: Emulator) -> None:
    emulator_conn.add_fault(Fault(kind="status", status=502, endpoint="create"))
    with pytest.raises(VidgenError) as info:
        op(retry_on_unknown_create_outcome=True).execute(new_try(store))
    assert not isinstance(info.value, AirflowFailException)
    assert "may create and bill a second generation" in str(info.value)


def test_a_404_that_is_not_the_apis_answer_does_not_resubmit(store: FakeStore, emulator_conn: Emulator) -> None:
    op(wait_for_completion=False).execute(new_try(store))
    emulator_conn.add_fault(Fault(kind="status", status=404, endpoint="result", text="<html>Not Found</html>"))
    with pytest.raises(VidgenTransientError, match="not creating another one"):
        op(wait_for_completion=False).execute(new_try(store))
    assert len(emulator_conn.creates()) == 1


def test_id_that_cannot_be_recorded_fails_without_retries(emulator_conn: Emulator) -> None:
    from airflow_provider_vidgen.exceptions import VidgenStateNotRecordedError

    class BrokenStore(FakeStore):
        def set(self, key: str, value: Any, **_: Any) -> None:
            raise RuntimeError("store unavailable")

    context = new_try(BrokenStore())  # type: ignore[arg-type]
    with pytest.raises(VidgenStateNotRecordedError) as info:
        op().execute(context)
    assert isinstance(info.value, AirflowFailException)
    generation_id = context["ti"].xcom["generation_id"]
    assert generation_id in str(info.value)
    assert len(emulator_conn.creates()) == 1
