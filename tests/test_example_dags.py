"""End to end: the example DAGs run with ``airflow dags test`` (embedded Airflow, SQLite) against the emulator.

Asserts the run's XComs (read from the metadata database) and the requests the emulator received.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from tests.conftest import SECRET_KEY, Run, conn_json

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
ALL_DAGS = [
    "example_vidgen_text_to_video",
    "example_vidgen_first_last_frame",
    "example_vidgen_references",
    "example_starvideos",
    "example_vidgen_mapped",
    "example_vidgen_daily",
    "example_vidgen_deferrable",
    "example_vidgen_daily_pipeline",
]

pytestmark = pytest.mark.e2e


@pytest.fixture
def dags_test(dags_test_in: Any) -> Any:
    return dags_test_in(EXAMPLES)


# A manual run without a logical date, as the Airflow 3 UI and REST API trigger by default.
# (`airflow dags test` always gives its run a logical date: "now" when none is given.)
MANUAL_RUN = """
import sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.get_dag(sys.argv[2]).test(logical_date=None)
assert run.logical_date is None, run.logical_date
print(f"manual run {run.run_id}: {run.state}, run_after {run.run_after.isoformat()}")
sys.exit(0 if run.state == "success" else 1)
"""


@pytest.fixture
def manual_run(dags_test: Any, airflow_home: Path, vidgen_emulator: Emulator):  # type: ignore[no-untyped-def]
    """``manual_run(dag_id, **env)``: run a DAG as a manual run that has no logical date (Airflow 3)."""
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

    if not AIRFLOW_V_3_0_PLUS:
        pytest.skip("Airflow 2 gives every run a logical date")

    def run(dag_id: str, **env_extra: str) -> Run:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_VIDGEN_DEFAULT": conn_json(vidgen_emulator),
            "VIDGEN_EXAMPLE_POLL_INTERVAL": "0.2",
            **env_extra,
        }
        env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        done = subprocess.run(
            [sys.executable, "-c", MANUAL_RUN, str(EXAMPLES), dag_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Run.read(done, airflow_home, dag_id)

    return run


def _logical_date(airflow_home: Path, run_id: str) -> Any:
    import sqlite3

    with sqlite3.connect(str(airflow_home / "airflow.db")) as db:
        return db.execute("SELECT logical_date FROM dag_run WHERE run_id = ?", (run_id,)).fetchone()[0]


def test_examples_parse_without_import_errors() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow >= 3.2
    except ImportError:
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLES))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES=False
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(ALL_DAGS)


# Context keys that exist only in runs with a logical date (Airflow 3 manual runs may have none).
LOGICAL_DATE_ONLY = {
    "ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz", "logical_date", "execution_date",
    "data_interval_start", "data_interval_end", "prev_ds", "next_ds", "yesterday_ds", "tomorrow_ds",
}  # fmt: skip


def _bare_names(template: str) -> set[str]:
    """Names a Jinja template reads from the context (not attributes, not filters)."""
    from jinja2 import Environment, meta

    env = Environment()
    env.filters.update(dict.fromkeys(("ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz"), str))  # Airflow's
    return meta.find_undeclared_variables(env.parse(template))


def test_examples_use_no_template_that_needs_a_logical_date() -> None:
    import ast

    offending = []
    for path in sorted(EXAMPLES.glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            if is_text and "{{" in node.value and "}}" in node.value:
                offending += [(path.name, name) for name in _bare_names(node.value) & LOGICAL_DATE_ONLY]
    assert offending == []
    assert _bare_names("{{ ds }}") == {"ds"}  # the check sees what it must
    assert _bare_names("{{ (dag_run.logical_date or dag_run.run_after) | ds }}") == {"dag_run"}


def test_text_to_video_create_then_sensor(dags_test: Any, vidgen_emulator: Emulator) -> None:
    run = dags_test("example_vidgen_text_to_video")
    assert run.returncode == 0, run.output[-3000:]
    assert run.state == "success"
    (create,) = vidgen_emulator.creates()
    generation_id = create.generation_id
    assert create.body == {
        "model": "videos",
        "prompt": "A cute kitten playing in the grass, bright daylight, cinematic camera",
        "duration": 5,
        "ratio": "16:9",
        "resolution": "720p",
    }
    assert run.xcom[("create", -1, "return_value")] == generation_id
    assert run.xcom[("create", -1, "generation_id")] == generation_id
    result = run.xcom[("wait", -1, "return_value")]
    assert result["id"] == generation_id
    assert result["status"] == "completed"
    assert result["video_url"].startswith(f"{vidgen_emulator.download_base_url}/files/{generation_id}.mp4")
    assert result["actual_duration"] == 5
    assert {r.generation_id for r in vidgen_emulator.requests_to("result")} == {generation_id}
    assert all(r.authorization == f"Bearer {SECRET_KEY}" for r in vidgen_emulator.requests)
    assert SECRET_KEY not in run.output


def test_first_last_frame_waits_in_operator(dags_test: Any, vidgen_emulator: Emulator) -> None:
    run = dags_test("example_vidgen_first_last_frame")
    assert run.returncode == 0, run.output[-3000:]
    (create,) = vidgen_emulator.creates()
    assert create.body["image"].endswith("harbour-dawn.png")
    assert create.body["lastFrameImage"].endswith("harbour-morning.png")
    assert run.xcom[("create_and_wait", -1, "generation_id")] == create.generation_id
    assert run.xcom[("create_and_wait", -1, "video_url")].startswith(vidgen_emulator.download_base_url)
    assert run.xcom[("create_and_wait", -1, "actual_duration")] == 8


def test_references(dags_test: Any, vidgen_emulator: Emulator) -> None:
    run = dags_test("example_vidgen_references")
    assert run.returncode == 0, run.output[-3000:]
    (create,) = vidgen_emulator.creates()
    assert create.body["model"] == "videos_fast"
    assert len(create.body["referenceImages"]) == 2
    assert len(create.body["referenceVideos"]) == 1
    assert "image" not in create.body
    assert run.xcom[("create_and_wait", -1, "video_url")]


def test_starvideos_zero_one_two_images(dags_test: Any, vidgen_emulator: Emulator) -> None:
    run = dags_test("example_starvideos")
    assert run.returncode == 0, run.output[-3000:]
    creates = vidgen_emulator.requests_to("starvideos_create")
    assert sorted(len(c.body.get("images", [])) for c in creates) == [0, 1, 2]
    for task_id in ("text_to_video", "single_image", "first_last_frame"):
        assert run.xcom[(task_id, -1, "video_url")].startswith(vidgen_emulator.download_base_url)
        assert run.xcom[(task_id, -1, "generation_id")].startswith("video_starvideos_")


def test_mapped_over_prompts(dags_test: Any, vidgen_emulator: Emulator) -> None:
    run = dags_test("example_vidgen_mapped")
    assert run.returncode == 0, run.output[-3000:]
    creates = vidgen_emulator.creates()
    assert len(creates) == 3
    ids = {run.xcom[("create", i, "generation_id")] for i in range(3)}
    assert ids == {c.generation_id for c in creates}
    waited = {run.xcom[("wait", i, "return_value")]["id"] for i in range(3)}
    assert waited == ids
    assert all(run.xcom[("wait", i, "return_value")]["status"] == "completed" for i in range(3))


def test_daily_prompt_is_templated_from_ds(dags_test: Any, vidgen_emulator: Emulator) -> None:
    # The first poke sees "processing" however late it comes (a loaded machine may reschedule slowly),
    # so a later poke that sees "completed" logs a transition only if it continues the same wait.
    vidgen_emulator.script_prompt("Daily highlights", Timeline(queued_for=0, processing_for=0.5))
    vidgen_emulator.add_fault(Fault(kind="unknown_status", value="processing", endpoint="result"))
    run = dags_test("example_vidgen_daily", "2026-03-04")
    assert run.returncode == 0, run.output[-3000:]
    (create,) = vidgen_emulator.creates()
    assert create.body["prompt"].startswith("Daily highlights reel for 2026-03-04:")
    assert run.xcom[("wait", -1, "return_value")]["id"] == create.generation_id
    assert run.tasks[("wait", -1)][0] == "success"
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

    if AIRFLOW_V_3_3_PLUS:  # the rescheduled pokes continue one wait (task_state_store)
        assert f"Generation {create.generation_id}: processing -> completed after" in run.output


def test_daily_runs_manually_without_a_logical_date(
    manual_run: Any, vidgen_emulator: Emulator, airflow_home: Path
) -> None:
    run = manual_run("example_vidgen_daily")
    assert run.returncode == 0, run.output[-3000:]
    assert run.state == "success"
    assert _logical_date(airflow_home, run.run_id) is None
    run_after = run.output.split("run_after ", 1)[1][:10]  # the date the run was triggered for
    (create,) = vidgen_emulator.creates()
    assert create.body["prompt"].startswith(f"Daily highlights reel for {run_after}:")
    assert run.xcom[("wait", -1, "return_value")]["status"] == "completed"


def test_daily_pipeline_runs_manually_without_a_logical_date(
    manual_run: Any, vidgen_emulator: Emulator, airflow_home: Path, tmp_path: Path
) -> None:
    output = tmp_path / "videos"
    run = manual_run("example_vidgen_daily_pipeline", VIDGEN_EXAMPLE_OUTPUT=f"file://{output}")
    assert run.returncode == 0, run.output[-3000:]
    assert run.state == "success"
    assert _logical_date(airflow_home, run.run_id) is None
    run_after = run.output.split("run_after ", 1)[1][:10]
    content = vidgen_emulator.video_content()
    assert (output / run_after / "highlight.mp4").read_bytes() == content
    assert (output / run_after / "teaser.mp4").read_bytes() == content
    prompts = sorted(c.body["prompt"] for c in vidgen_emulator.creates())
    assert len(prompts) == 2
    assert prompts[0].startswith(f"Highlights of {run_after}:")
    assert prompts[1].startswith(f"Teaser for {run_after}:")
    assert {state for state, _ in run.tasks.values()} == {"success"}


def test_failed_generation_fails_the_run_with_api_error(dags_test: Any, vidgen_emulator: Emulator) -> None:
    vidgen_emulator.script_prompt(
        "kitten",
        Timeline(queued_for=0, processing_for=0.2, outcome="failed", error="prompt violates the content policy"),
    )
    run = dags_test("example_vidgen_text_to_video")
    assert run.state == "failed"
    (create,) = vidgen_emulator.creates()
    assert run.xcom[("create", -1, "generation_id")] == create.generation_id  # kept despite the failure
    assert f"Generation {create.generation_id} failed: prompt violates the content policy" in run.output
    assert run.tasks[("wait", -1)][0] == "failed"
    assert SECRET_KEY not in run.output


def test_deferrable_operator_and_sensor(dags_test: Any, vidgen_emulator: Emulator) -> None:
    run = dags_test("example_vidgen_deferrable")
    assert run.returncode == 0, run.output[-3000:]
    assert run.output.count("running trigger in line") == 2  # both tasks deferred to the trigger
    star = vidgen_emulator.requests_to("starvideos_create")[0].generation_id
    videos = vidgen_emulator.requests_to("videos_create")[0].generation_id
    assert len(vidgen_emulator.creates()) == 2
    # The operator: the same XComs as the synchronous wait.
    assert run.xcom[("create_and_wait", -1, "return_value")] == star
    assert run.xcom[("create_and_wait", -1, "generation_id")] == star
    assert run.xcom[("create_and_wait", -1, "video_url")].startswith(
        f"{vidgen_emulator.download_base_url}/files/{star}"
    )
    assert run.xcom[("create_and_wait", -1, "actual_duration")] == 6
    # The sensor: the same result dict as in poke mode.
    result = run.xcom[("wait", -1, "return_value")]
    assert result["id"] == videos
    assert result["status"] == "completed"
    assert set(result) == {"id", "status", "model", "created", "video_url", "actual_duration", "error"}
    # Polled by the trigger (several reads per id), and every read carried the key to the API only.
    reads = vidgen_emulator.requests_to("result")
    assert {r.generation_id for r in reads} == {star, videos}
    assert len(reads) >= 4
    assert SECRET_KEY not in run.output


def test_deferred_failure_gives_the_same_error_as_poking(dags_test: Any, vidgen_emulator: Emulator) -> None:
    vidgen_emulator.script_prompt(
        "hummingbird", Timeline(queued_for=0.3, processing_for=0.2, outcome="failed", error="unsafe content")
    )
    run = dags_test("example_vidgen_deferrable")
    assert run.state == "failed"
    videos = vidgen_emulator.requests_to("videos_create")[0].generation_id
    assert f"Generation {videos} failed: unsafe content" in run.output
    assert run.tasks[("wait", -1)][0] == "failed"
    assert run.tasks[("create_and_wait", -1)][0] == "success"


def test_daily_pipeline_saves_videos_and_a_rerun_is_free(
    dags_test: Any, vidgen_emulator: Emulator, airflow_home: Path, tmp_path: Path
) -> None:
    import hashlib

    from airflow_provider_vidgen.testing.airflow_db import asset_events

    output = tmp_path / "videos"
    run = dags_test(
        "example_vidgen_daily_pipeline", "2026-03-04", reserialize=True, VIDGEN_EXAMPLE_OUTPUT=f"file://{output}"
    )
    assert run.returncode == 0, run.output[-3000:]
    highlight, teaser = output / "2026-03-04" / "highlight.mp4", output / "2026-03-04" / "teaser.mp4"
    content = vidgen_emulator.video_content()
    assert highlight.read_bytes() == content
    assert teaser.read_bytes() == content
    assert content[4:8] == b"ftyp"  # real MP4 files
    created = {c.endpoint: c.generation_id for c in vidgen_emulator.creates()}
    assert created.keys() == {"videos_create", "starvideos_create"}
    saved = run.xcom[("save_highlight", -1, "return_value")]
    assert saved["generation_id"] == created["videos_create"]
    assert saved["uri"] == f"file://{highlight}"
    assert saved["sha256"] == hashlib.sha256(content).hexdigest()
    assert run.xcom[("teaser", -1, "output")]["uri"] == f"file://{teaser}"
    assert run.xcom[("teaser", -1, "generation_id")] == created["starvideos_create"]
    # The download host never saw the key.
    assert [r.authorization for r in vidgen_emulator.requests_to("download")] == [None, None]
    # Asset events carry the manifests, for DAGs scheduled on the asset.
    events = dict(asset_events(airflow_home / "airflow.db", "example_vidgen_daily_pipeline", run.run_id))
    assert events["save_highlight"]["uri"] == f"file://{highlight}"
    assert events["teaser"]["uri"] == f"file://{teaser}"

    # Re-running the same day creates nothing and bills nothing.
    vidgen_emulator.reset()
    vidgen_emulator.api_key = SECRET_KEY
    rerun = dags_test("example_vidgen_daily_pipeline", "2026-03-04", VIDGEN_EXAMPLE_OUTPUT=f"file://{output}")
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert vidgen_emulator.creates() == []
    assert rerun.tasks[("create_highlight", -1)][0] == "skipped"
    assert rerun.tasks[("save_highlight", -1)][0] == "skipped"
    assert rerun.tasks[("teaser", -1)][0] == "success"
    assert rerun.xcom[("teaser", -1, "output")]["skipped"] is True
    assert highlight.read_bytes() == content
    # Airflow emits the teaser's asset event anyway; it says what is there, and that nothing is new.
    rerun_events = dict(asset_events(airflow_home / "airflow.db", "example_vidgen_daily_pipeline", rerun.run_id))
    assert rerun_events["teaser"]["uri"] == f"file://{teaser}"
    assert rerun_events["teaser"]["skipped"] is True
