"""Pay once, end to end: ``airflow dags test`` (which retries) with the emulator's log as the witness.

The task_state_store exists from Airflow 3.3: there a retry reconnects to, or reuses, the generation
the first try created. On Airflow 2.11 retries behave as before (and the operator warns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

from airflow_provider_vidgen.testing import Emulator, Fault, Timeline

DAGS = Path(__file__).resolve().parent / "dags"

pytestmark = pytest.mark.e2e
needs_state_store = pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="task_state_store needs Airflow >= 3.3")


@pytest.fixture
def dags_test(dags_test_in: Any) -> Any:
    # No retries inside the hook: a failed status read fails the poll at once (budget: 1 failed poll).
    return dags_test_in(DAGS, max_retries=0)


def fail_two_polls(emulator: Emulator) -> None:
    """Two failed status reads in a row: with a budget of 1, the first try fails while waiting."""
    emulator.add_fault(Fault(kind="status", status=500, endpoint="result", times=2))


@needs_state_store
def test_retry_reconnects_to_the_generation_in_progress(dags_test: Any, vidgen_emulator: Emulator) -> None:
    vidgen_emulator.set_timeline(Timeline(queued_for=0.5, processing_for=3.0))
    fail_two_polls(vidgen_emulator)
    run = dags_test("vidgen_durable_wait")
    assert run.state == "success", run.output[-3000:]
    (create,) = vidgen_emulator.creates()  # exactly one create
    assert run.tasks[("create", -1)] == ("success", 2)  # try 2 succeeded
    assert f"Durable create: reconnect: generation {create.generation_id} is" in run.output
    assert run.xcom[("create", -1, "return_value")] == create.generation_id
    assert run.xcom[("create", -1, "generation_id")] == create.generation_id
    assert run.xcom[("create", -1, "video_url")].startswith(vidgen_emulator.download_base_url)
    assert run.xcom[("create", -1, "actual_duration")] == 5


@needs_state_store
def test_generation_completed_before_the_retry_is_reused(dags_test: Any, vidgen_emulator: Emulator) -> None:
    vidgen_emulator.set_timeline(Timeline(queued_for=0, processing_for=0.3))
    fail_two_polls(vidgen_emulator)
    run = dags_test("vidgen_durable_wait")
    assert run.state == "success", run.output[-3000:]
    (create,) = vidgen_emulator.creates()  # 0 extra creates
    assert run.tasks[("create", -1)] == ("success", 2)
    assert f"Durable create: reuse: generation {create.generation_id} already completed" in run.output
    assert run.xcom[("create", -1, "video_url")].startswith(vidgen_emulator.download_base_url)
    assert run.xcom[("create", -1, "actual_duration")] == 5


@needs_state_store
def test_failed_generation_is_replaced_once(dags_test: Any, vidgen_emulator: Emulator) -> None:
    vidgen_emulator.queue_timeline(Timeline(queued_for=0, processing_for=0.2, outcome="failed", error="blurry"))
    vidgen_emulator.set_timeline(Timeline(queued_for=0, processing_for=0.2))
    run = dags_test("vidgen_durable_wait")
    assert run.state == "success", run.output[-3000:]
    first, second = vidgen_emulator.creates()  # exactly 2 creates
    assert f"resubmit: stored generation {first.generation_id} failed: blurry" in run.output
    assert run.xcom[("create", -1, "generation_id")] == second.generation_id


@needs_state_store
def test_deferred_wait_stores_the_id_first_and_a_failed_resume_reconnects(
    dags_test: Any, vidgen_emulator: Emulator
) -> None:
    vidgen_emulator.set_timeline(Timeline(queued_for=0.5, processing_for=3.0))
    # The check before deferring fails once (within the budget of 1: it defers); the trigger's first
    # read fails too (the budget carries over: spent), so the resumed task fails and Airflow retries it.
    vidgen_emulator.add_fault(Fault(kind="status", status=500, endpoint="result", times=2))
    run = dags_test("vidgen_durable_deferrable")
    assert run.state == "success", run.output[-3000:]
    (create,) = vidgen_emulator.creates()
    assert run.output.count("running trigger in line") >= 1
    assert f"Durable create: reconnect: generation {create.generation_id} is" in run.output
    assert run.tasks[("create", -1)] == ("success", 2)
    assert run.xcom[("create", -1, "video_url")].startswith(vidgen_emulator.download_base_url)


@needs_state_store
def test_mapped_task_only_the_failing_index_recreates(dags_test: Any, vidgen_emulator: Emulator) -> None:
    vidgen_emulator.set_timeline(Timeline(queued_for=0, processing_for=0.3))
    vidgen_emulator.script_prompt(
        "mapped one",
        Timeline(queued_for=0, processing_for=0.2, outcome="failed", error="bad luck"),
        Timeline(queued_for=0, processing_for=0.3),
    )
    run = dags_test("vidgen_durable_mapped")
    assert run.state == "success", run.output[-3000:]
    prompts = [c.body["prompt"] for c in vidgen_emulator.creates()]
    assert sorted(prompts) == ["mapped one", "mapped one", "mapped two", "mapped zero"]
    assert run.tasks[("create", 0)] == ("success", 1)
    assert run.tasks[("create", 1)] == ("success", 2)
    assert run.tasks[("create", 2)] == ("success", 1)
    ids = {run.xcom[("create", i, "generation_id")] for i in range(3)}
    assert len(ids) == 3


def test_unknown_create_outcome_fails_without_retry(dags_test_in: Any, vidgen_emulator: Emulator) -> None:
    # The server creates (bills) the task, then answers too late: a read timeout on the create.
    vidgen_emulator.add_fault(Fault(kind="delay", delay=3.0, endpoint="create", after_create=True))
    run = dags_test_in(DAGS, max_retries=0, timeout=1)("vidgen_durable_unknown_outcome")
    assert run.state == "failed"
    assert len(vidgen_emulator.creates()) == 1
    assert len(vidgen_emulator.generations) == 1
    assert run.tasks[("create", -1)] == ("failed", 1)  # no second try, although the task has retries=1
    assert "outcome is unknown" in run.output


@needs_state_store
def test_a_try_killed_mid_create_is_not_created_again(dags_test_in: Any, vidgen_emulator: Emulator) -> None:
    # The API creates (bills) the task and answers after 6 s; execution_timeout (3 s) kills the try
    # while the create is awaited, and the task has retries=2.
    vidgen_emulator.add_fault(Fault(kind="delay", delay=6.0, endpoint="create", after_create=True))
    run = dags_test_in(DAGS, max_retries=0, timeout=30)("vidgen_durable_killed_create")
    assert run.state == "failed", run.output[-3000:]
    assert len(vidgen_emulator.creates()) == 1  # exactly one create reached the API
    assert len(vidgen_emulator.generations) == 1
    assert run.tasks[("create", -1)] == ("failed", 2)  # the retry refused to create and failed for good
    assert "outcome of that create is unknown" in run.output
    assert "check the provider's dashboard or billing for a task created at" in run.output


@pytest.mark.skipif(AIRFLOW_V_3_3_PLUS, reason="the Airflow < 3.3 behaviour")
def test_before_airflow_3_3_retries_create_again_and_warn(dags_test: Any, vidgen_emulator: Emulator) -> None:
    vidgen_emulator.set_timeline(Timeline(queued_for=0.5, processing_for=3.0))
    fail_two_polls(vidgen_emulator)
    run = dags_test("vidgen_durable_wait")
    assert run.state == "success", run.output[-3000:]
    assert len(vidgen_emulator.creates()) == 2  # as before: the retry creates a new generation
    assert "no task_state_store" in run.output
    assert "may create (and bill) a new generation" in run.output
