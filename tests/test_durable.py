"""Durable create operators: the decision a later try makes with what an earlier try stored.

The task_state_store is a dict here (its API: get/set); the API is the emulator. The same flows run
for real under ``airflow dags test`` in test_durable_dags.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_vidgen.durable import (
    STATE_KEY,
    UNKNOWN_ID_GRACE_PERIOD,
    in_flight_record,
    request_fingerprint,
    stored_record,
)
from airflow_provider_vidgen.exceptions import (
    VidgenCreateOutcomeUnknownError,
    VidgenError,
    VidgenGenerationFailedError,
    VidgenTransientError,
)
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from tests.conftest import FakeTI, conn_json


class FakeStore:
    """The task_state_store's API (get/set/delete), with a log of the writes."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes: list[tuple[str, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        assert value is not None
        self.data[key] = value
        self.writes.append(("set", value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.writes.append(("delete", key))


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def new_try(store: FakeStore) -> dict[str, Any]:
    """A fresh context for the next try: XCom is cleared, the task_state_store is kept."""
    return {"ti": FakeTI(), "task_state_store": store}


def op(**kwargs: Any) -> VideosCreateOperator:
    params = {"task_id": "task", "prompt": "a cat", "duration": 5, "wait_for_completion": True, "poll_interval": 0.05}
    return VideosCreateOperator(**{**params, **kwargs})


CAT = VideosRequest.build(model="videos", prompt="a cat", duration=5, ratio="16:9", resolution="720p")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_first_try_stores_id_and_fingerprint_before_waiting(store: FakeStore, emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    context = new_try(store)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    generation_id = op().execute(context)
    after = datetime.now(timezone.utc)
    record = store.data[STATE_KEY]
    assert set(record) == {"generation_id", "fingerprint", "created_at"}
    assert record["generation_id"] == generation_id
    assert record["fingerprint"] == request_fingerprint(CAT)
    assert before <= utc(record["created_at"]) <= after


def test_in_flight_marker_is_stored_before_the_create_is_sent(
    store: FakeStore, emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_at_send: list[Any] = []
    real_create = VidgenHook.create

    def create(hook: VidgenHook, request: Any) -> str:
        seen_at_send.append(dict(store.data.get(STATE_KEY) or {}))  # what a crash now would leave behind
        return real_create(hook, request)

    monkeypatch.setattr(VidgenHook, "create", create)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    generation_id = op(wait_for_completion=False).execute(new_try(store))
    (marker,) = seen_at_send
    assert marker["in_flight"] is True
    assert marker["fingerprint"] == request_fingerprint(CAT)
    assert "generation_id" not in marker
    assert before <= utc(marker["attempted_at"]) <= datetime.now(timezone.utc)
    # ...then replaced by the id right after the create answered.
    assert [kind for kind, _ in store.writes] == ["set", "set"]
    assert store.data[STATE_KEY]["generation_id"] == generation_id


class WorkerKilled(BaseException):
    """What the process sees when it dies mid-create: no ``except Exception`` runs, no answer is read."""


def test_a_try_that_dies_mid_create_makes_the_next_try_refuse_to_create(
    store: FakeStore, emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_create = VidgenHook.create

    def dies_after_sending(hook: VidgenHook, request: Any) -> str:
        real_create(hook, request)  # the request reached the API: a generation exists and is billed
        raise WorkerKilled

    monkeypatch.setattr(VidgenHook, "create", dies_after_sending)
    with pytest.raises(WorkerKilled):
        op(wait_for_completion=False).execute(new_try(store))
    attempted_at = store.data[STATE_KEY]["attempted_at"]
    monkeypatch.setattr(VidgenHook, "create", real_create)
    with pytest.raises(VidgenCreateOutcomeUnknownError) as info:
        op(wait_for_completion=False).execute(new_try(store))
    assert isinstance(info.value, AirflowFailException)  # no Airflow retries
    assert "outcome of that create is unknown" in str(info.value)
    assert attempted_at in str(info.value)
    assert "retry_on_unknown_create_outcome=True" in str(info.value)
    assert len(emulator_conn.creates()) == 1


def test_marker_without_id_creates_again_with_retry_on_unknown_create_outcome(
    store: FakeStore, emulator_conn: Emulator, log_text: Any
) -> None:
    store.data[STATE_KEY] = in_flight_record(request_fingerprint(CAT))
    generation_id = op(wait_for_completion=False, retry_on_unknown_create_outcome=True).execute(new_try(store))
    assert len(emulator_conn.creates()) == 1
    assert store.data[STATE_KEY]["generation_id"] == generation_id
    assert "unknown outcome; creating again (retry_on_unknown_create_outcome=True)" in log_text()


def test_marker_of_another_request_does_not_block_a_changed_request(store: FakeStore, emulator_conn: Emulator) -> None:
    store.data[STATE_KEY] = in_flight_record(request_fingerprint(CAT))
    op(wait_for_completion=False, prompt="a dog").execute(new_try(store))
    assert len(emulator_conn.creates()) == 1


def test_a_create_that_provably_created_nothing_clears_the_marker(store: FakeStore, emulator_conn: Emulator) -> None:
    from airflow_provider_vidgen.exceptions import VidgenRequestRejectedError

    emulator_conn.add_fault(Fault(kind="status", status=422, endpoint="create", msg="bad request"))
    with pytest.raises(VidgenRequestRejectedError):
        op(wait_for_completion=False).execute(new_try(store))
    assert [kind for kind, _ in store.writes] == ["set", "delete"]
    assert STATE_KEY not in store.data
    # The retry may create: nothing was created before.
    op(wait_for_completion=False).execute(new_try(store))
    assert len(emulator_conn.generations) == 1


def test_a_create_answered_failed_fails_at_once_and_a_retry_resubmits(
    store: FakeStore, emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, log_text: Any
) -> None:
    real_create = VidgenHook.create

    def answered_failed(hook: VidgenHook, request: Any) -> str:
        generation_id = real_create(hook, request)
        raise VidgenGenerationFailedError(generation_id, "image unreachable")

    monkeypatch.setattr(VidgenHook, "create", answered_failed)
    context = new_try(store)
    with pytest.raises(VidgenGenerationFailedError, match="failed: image unreachable") as info:
        op(wait_for_completion=False).execute(context)
    failed = info.value.generation_id
    assert context["ti"].xcom["generation_id"] == failed
    record = store.data[STATE_KEY]
    assert (record["generation_id"], record["failed"], record["error"]) == (failed, True, "image unreachable")
    monkeypatch.setattr(VidgenHook, "create", real_create)
    reads = len(emulator_conn.requests_to("result"))
    second = op(wait_for_completion=False).execute(new_try(store))
    assert second != failed
    assert len(emulator_conn.creates()) == 2
    assert len(emulator_conn.requests_to("result")) == reads  # the record says it failed: no read needed
    assert f"resubmit: stored generation {failed} failed at creation: image unreachable" in log_text()


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


def stored_ago(age: timedelta, generation_id: str = "proj_gone") -> dict[str, Any]:
    return stored_record(generation_id, request_fingerprint(CAT), datetime.now(timezone.utc) - age)


def test_unknown_stored_id_older_than_the_grace_period_resubmits(
    store: FakeStore, emulator_conn: Emulator, log_text: Any
) -> None:
    store.data[STATE_KEY] = stored_ago(UNKNOWN_ID_GRACE_PERIOD + timedelta(minutes=1))
    op(wait_for_completion=False).execute(new_try(store))
    assert len(emulator_conn.creates()) == 1
    assert "resubmit: stored generation proj_gone is unknown to the API" in log_text()


def test_unknown_stored_id_within_the_grace_period_is_not_replaced(store: FakeStore, emulator_conn: Emulator) -> None:
    store.data[STATE_KEY] = stored_ago(timedelta(seconds=10))
    with pytest.raises(VidgenTransientError, match="grace period") as info:
        op(wait_for_completion=False).execute(new_try(store))
    assert not isinstance(info.value, AirflowFailException)  # a later try checks again
    assert "not creating another one" in str(info.value)
    assert emulator_conn.creates() == []


def test_a_json_404_that_does_not_name_the_task_does_not_resubmit(store: FakeStore, emulator_conn: Emulator) -> None:
    # A missing route during a deploy: JSON, 404, but not the API's "task <id> not found".
    store.data[STATE_KEY] = stored_ago(timedelta(hours=1))
    emulator_conn.add_fault(Fault(kind="status", status=404, endpoint="result", msg="no route for GET /v1/result"))
    with pytest.raises(VidgenTransientError, match="not creating another one"):
        op(wait_for_completion=False).execute(new_try(store))
    assert emulator_conn.creates() == []


def test_a_404_naming_another_task_does_not_resubmit(store: FakeStore, emulator_conn: Emulator) -> None:
    store.data[STATE_KEY] = stored_ago(timedelta(hours=1))
    emulator_conn.add_fault(Fault(kind="status", status=404, endpoint="result", msg="task proj_other not found"))
    with pytest.raises(VidgenTransientError, match="not creating another one"):
        op(wait_for_completion=False).execute(new_try(store))
    assert emulator_conn.creates() == []


def test_a_stored_id_with_blanks_is_normalised(store: FakeStore, emulator_conn: Emulator) -> None:
    first = op(wait_for_completion=False).execute(new_try(store))
    store.data[STATE_KEY] = {**store.data[STATE_KEY], "generation_id": f"  {first}\n"}
    assert op(wait_for_completion=False).execute(new_try(store)) == first
    assert len(emulator_conn.creates()) == 1


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


def test_without_task_state_store_warns_once_per_process_and_creates(
    emulator_conn: Emulator, log_text: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_vidgen.operators import vidgen

    monkeypatch.setattr(vidgen, "_warned_no_state_store", False)  # a fresh process
    warning = "may create (and bill) a new generation"
    StarVideosCreateOperator(task_id="t", prompt="p").execute({"ti": FakeTI()})
    after_first = log_text()
    assert warning in after_first
    assert "durable=False silences it" in after_first
    StarVideosCreateOperator(task_id="t", prompt="p").execute({"ti": FakeTI()})
    assert log_text().count(warning) == after_first.count(warning)  # not logged again
    assert len(emulator_conn.creates()) == 2


def test_unknown_outcome_fails_without_retries_by_default(store: FakeStore, emulator_conn: Emulator) -> None:
    emulator_conn.add_fault(Fault(kind="status", status=502, endpoint="create"))
    with pytest.raises(VidgenCreateOutcomeUnknownError) as info:
        op().execute(new_try(store))
    assert isinstance(info.value, AirflowFailException)
    assert "outcome is unknown" in str(info.value)
    # The marker stays (no id): a later try does not create blindly.
    assert STATE_KEY in store.data
    assert "generation_id" not in store.data[STATE_KEY]
    with pytest.raises(VidgenCreateOutcomeUnknownError, match="outcome of that create is unknown"):
        op().execute(new_try(store))
    assert len(emulator_conn.creates()) == 1


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
            if "generation_id" in value:  # the marker before the create is written, the id after is not
                raise RuntimeError("store unavailable")
            super().set(key, value)

    context = new_try(BrokenStore())  # type: ignore[arg-type]
    with pytest.raises(VidgenStateNotRecordedError) as info:
        op().execute(context)
    assert isinstance(info.value, AirflowFailException)
    generation_id = context["ti"].xcom["generation_id"]
    assert generation_id in str(info.value)
    assert len(emulator_conn.creates()) == 1


def test_a_marker_that_cannot_be_written_sends_nothing(emulator_conn: Emulator) -> None:
    class ReadOnlyStore(FakeStore):
        def set(self, key: str, value: Any, **_: Any) -> None:
            raise RuntimeError("store unavailable")

    with pytest.raises(VidgenError, match="nothing was sent, nothing billed") as info:
        op().execute(new_try(ReadOnlyStore()))
    assert not isinstance(info.value, AirflowFailException)
    assert emulator_conn.creates() == []


@pytest.mark.parametrize(
    ("body", "proves"),
    [
        ('{"code": "404", "msg": "task proj_1 not found", "data": null}', True),
        ('{"code": "404", "msg": "Task PROJ_1 Not Found"}', True),
        ("<html>task proj_1 not found</html>", False),
        ('{"code": "404", "msg": "not found", "data": null}', False),
        ('{"error": "route not found"}', False),
        ('{"error": "task proj_1 not found"}', False),
        ('{"msg": "task proj_12 is processing"}', False),
        ('{"msg": "task proj_12 not found"}', False),
        ('{"msg": "route not found", "data": "proj_1"}', False),
    ],
)
def test_what_proves_a_task_unknown(body: str, proves: bool) -> None:
    """Evidence is the API's own JSON ``msg`` naming this id as not found; the request line's id is not."""
    from airflow_provider_vidgen import protocol
    from airflow_provider_vidgen.durable import proves_task_not_found
    from airflow_provider_vidgen.exceptions import VidgenNotFoundError

    err = protocol.error_for_status(404, body, "GET /v1/result/proj_1", "secret-key")
    assert isinstance(err, VidgenNotFoundError)
    assert proves_task_not_found(err, "proj_1") is proves


def test_a_create_the_transport_refused_to_send_clears_the_marker(
    store: FakeStore, emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import json

    from airflow_provider_vidgen.exceptions import VidgenConfigError

    # An https Base URL with a CA bundle that does not exist: requests refuses before connecting.
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDGEN_DEFAULT",
        json.dumps({"conn_type": "vidgen", "host": f"https://127.0.0.1:{emulator_conn.port}", "password": "k-12345"}),
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(VidgenConfigError, match="nothing was sent"):
        op(wait_for_completion=False).execute(new_try(store))
    assert [kind for kind, _ in store.writes] == ["set", "delete"]
    assert STATE_KEY not in store.data  # a later try (with the bundle fixed) may create
    assert emulator_conn.requests == []
