"""``airflow vidgen plan`` end to end: the real ``airflow`` command on the example DAGs and a test DAG.

The emulator is the connection's API: it must receive no request. The metadata database and the
output folders must be left as they were (no row, no file written).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

from airflow_provider_vidgen.testing import Emulator
from tests.conftest import AIRFLOW, SECRET_KEY, conn_json

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_dags"
TEST_DAGS = Path(__file__).resolve().parent / "dags"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 lets no provider add an `airflow` command"),
]


def db_rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {table: connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables}


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.fixture
def plan(airflow_home: Path, vidgen_emulator: Emulator):  # type: ignore[no-untyped-def]
    """``plan(dags_folder, *args, **env)`` runs ``airflow vidgen plan`` and checks it sent and wrote nothing."""
    db = airflow_home / "airflow.db"

    def run(dags_folder: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_VIDGEN_DEFAULT": conn_json(vidgen_emulator),
            **env_extra,
        }
        env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        rows = db_rows(db)
        done = subprocess.run(
            [AIRFLOW, "vidgen", "plan", *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert vidgen_emulator.requests == [], "the plan sent a request to the API"
        assert db_rows(db) == rows, "the plan wrote to the metadata database"
        return done

    return run


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    start = done.stdout.index("{\n")  # Airflow may log a line or two before the document
    return json.loads(done.stdout[start:])  # type: ignore[no-any-return]


def total_line(text: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith("total ")]
    return line.split()


def test_backfill_plan_counts_creates_skips_invalid_and_unknown(plan: Any, tmp_path: Path) -> None:
    output = tmp_path / "videos"
    (output / "2026-01-02").mkdir(parents=True)
    (output / "2026-01-02" / "daily.mp4").write_bytes(b"an earlier video")
    before = tree(output)
    env = {"VIDGEN_PLAN_OUTPUT": output.as_uri()}
    args = ("vidgen_plan_backfill", "--start-date", "2026-01-01", "--end-date", "2026-01-04")

    done = plan(TEST_DAGS, *args, "--json", **env)

    assert done.returncode != 0, done.stdout + done.stderr
    assert "Plan refused: 1 invalid request(s)" in done.stderr
    doc = as_json(done)
    assert [run["logical_date"][:10] for run in doc["runs"]] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert doc["total"] == {"create": 10, "seconds": 44, "skip": 1, "invalid": 1, "unknown": 4}
    by_task = {row["task_id"]: row for row in doc["by_task"]}
    assert (by_task["daily"]["create"], by_task["daily"]["skip"], by_task["daily"]["invalid"]) == (2, 1, 1)
    assert (by_task["variants"]["create"], by_task["variants"]["seconds"]) == (8, 32)  # 2 prompts x 4 runs x 4 s
    assert by_task["variants"]["model"] == "starvideos_v3"
    daily = {item["logical_date"][:10]: item for item in doc["items"] if item["task_id"] == "daily"}
    assert daily["2026-01-02"]["outcome"] == "skip"
    assert daily["2026-01-01"]["output"].endswith("/2026-01-01/daily.mp4")  # the rendered output_path
    assert daily["2026-01-03"]["outcome"] == "invalid"
    assert "duration" in daily["2026-01-03"]["detail"]
    assert "20" in daily["2026-01-03"]["detail"]
    variants = [
        item for item in doc["items"] if item["task_id"] == "variants" and item["logical_date"][:10] == "2026-01-01"
    ]
    assert [item["map_index"] for item in variants] == [0, 1]
    unknown = [item for item in doc["items"] if item["outcome"] == "unknown"]
    assert {item["task_id"] for item in unknown} == {"from_upstream"}
    assert all("'prompts'" in item["detail"] for item in unknown)
    assert tree(output) == before, "the plan wrote to the output folder"

    text = plan(TEST_DAGS, *args, **env)
    assert text.returncode != 0
    assert total_line(text.stdout) == ["total", "10", "44", "1", "1", "4"]
    assert "daily 2026-01-03T00:00:00+00:00: Invalid Videos request: duration" in text.stdout
    assert "from_upstream 2026-01-01T00:00:00+00:00: mapped over the XCom of 'prompts'" in text.stdout


def test_example_pipeline_over_a_range_with_an_output_present(plan: Any, tmp_path: Path) -> None:
    output = tmp_path / "videos"
    (output / "2026-01-02").mkdir(parents=True)
    (output / "2026-01-02" / "teaser.mp4").write_bytes(b"kept")
    done = plan(
        EXAMPLES,
        "example_vidgen_daily_pipeline",
        "--start-date",
        "2026-01-01",
        "--end-date",
        "2026-01-03",
        "--json",
        VIDGEN_EXAMPLE_OUTPUT=output.as_uri(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = as_json(done)
    by_task = {row["task_id"]: row for row in doc["by_task"]}
    assert (by_task["create_highlight"]["create"], by_task["create_highlight"]["seconds"]) == (3, 24)
    assert by_task["create_highlight"]["model"] == "videos_fast"
    assert (by_task["teaser"]["create"], by_task["teaser"]["seconds"], by_task["teaser"]["skip"]) == (2, 10, 1)
    assert {(row["family"], row["model"]): row["create"] for row in doc["by_model"]} == {
        ("Videos", "videos_fast"): 3,
        ("StarVideos", "starvideos_v3"): 2,
    }
    assert doc["total"]["invalid"] == 0


def test_max_creates_guards_a_backfill(plan: Any) -> None:
    args = ("example_vidgen_daily", "--start-date", "2026-01-01", "--end-date", "2026-01-03")
    over = plan(EXAMPLES, *args, "--max-creates", "2")
    assert over.returncode != 0
    assert "3 generations would be created, more than --max-creates 2" in over.stderr
    within = plan(EXAMPLES, *args, "--max-creates", "3")
    assert within.returncode == 0, within.stdout + within.stderr
    assert total_line(within.stdout) == ["total", "3", "24", "0", "0", "0"]


def test_one_run_of_a_mapped_example(plan: Any) -> None:
    done = plan(EXAMPLES, "example_vidgen_mapped", "--run-id", "manual__plan", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = as_json(done)
    assert doc["runs"] == [{"run_id": "manual__plan", "logical_date": None}]
    assert [(item["map_index"], item["outcome"]) for item in doc["items"]] == [
        (0, "create"),
        (1, "create"),
        (2, "create"),
    ]
    assert doc["total"] == {"create": 3, "seconds": 15, "skip": 0, "invalid": 0, "unknown": 0}


def test_a_date_with_a_run_in_flight_or_finished_is_planned_as_the_backfill_runs_it(
    plan: Any, airflow_home: Path, tmp_path: Path
) -> None:
    # A run of 2026-01-10 already exists (queued: in flight): `airflow backfill create` makes no run
    # for that date, whatever --reprocess-behavior says, so nothing of it is billed. (Dates apart from
    # the other tests' range.)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)

    def airflow(*command: str) -> None:
        done = subprocess.run([AIRFLOW, *command], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    airflow("dags", "reserialize")
    airflow("dags", "trigger", "vidgen_plan_backfill", "--logical-date", "2026-01-10T00:00:00+00:00")
    try:
        check_plans_without_the_run_in_flight(plan, tmp_path)
    finally:  # the database is shared by the session's tests
        airflow("dags", "delete", "vidgen_plan_backfill", "--yes")


def check_plans_without_the_run_in_flight(plan: Any, tmp_path: Path) -> None:
    args = ("vidgen_plan_backfill", "--start-date", "2026-01-09", "--end-date", "2026-01-10", "--json")
    for reprocess in ((), ("--reprocess-behavior", "completed")):
        done = plan(TEST_DAGS, *args, *reprocess, VIDGEN_PLAN_OUTPUT=(tmp_path / "none").as_uri())
        assert done.returncode == 0, done.stdout + done.stderr
        doc = as_json(done)
        assert [run["logical_date"][:10] for run in doc["runs"]] == ["2026-01-09"]
        assert [(row["logical_date"][:10], row["reason"][:22]) for row in doc["not_run"]] == [
            ("2026-01-10", "a run is in flight (qu")
        ]
        assert {item["logical_date"][:10] for item in doc["items"]} == {"2026-01-09"}
        assert doc["total"] == {"create": 3, "seconds": 14, "skip": 0, "invalid": 0, "unknown": 1}
    text = plan(TEST_DAGS, *args[:-1], VIDGEN_PLAN_OUTPUT=(tmp_path / "none").as_uri())
    assert "Not run by the backfill (1 date(s), nothing planned for them):" in text.stdout
    assert total_line(text.stdout) == ["total", "3", "14", "0", "0", "1"]


def test_a_template_reading_the_connection_password_or_a_sensitive_variable_prints_neither(
    plan: Any, vidgen_emulator: Emulator
) -> None:
    # Rendering reads them through the task context, which masks them as a task's logs do.
    vidgen_emulator.api_key = key = SECRET_KEY
    secret = "var-SECRET-4a5b6c7d"
    args = ("vidgen_plan_secrets", "--start-date", "2026-01-01", "--end-date", "2026-01-01")
    for output in ((), ("--json",)):
        done = plan(TEST_DAGS, *args, *output, AIRFLOW_VAR_VIDGEN_API_KEY=secret)
        assert done.returncode != 0  # the Variable renders to an invalid duration
        assert "Plan refused: 1 invalid request(s)" in done.stderr
        printed = done.stdout + done.stderr
        assert key not in printed
        assert secret not in printed
        if output:
            assert '"prompt": "with ***"' in printed  # the rendered request, masked
        assert "(got '***')" in printed  # the validation error, masked


def test_a_missing_dag_or_one_that_fails_to_import_is_said_without_a_traceback(plan: Any, tmp_path: Path) -> None:
    missing = plan(TEST_DAGS, "no_such_dag", "--start-date", "2026-01-01", "--end-date", "2026-01-02")
    assert missing.returncode != 0
    assert "Dag 'no_such_dag' could not be found in the DAG bundles." in missing.stderr
    assert "Traceback" not in missing.stderr

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "broken_dag.py").write_text("# an airflow DAG file\nfrom airflow.sdk import DAG\n\nVALUE = 1 / 0\n")
    broken = plan(folder, "broken", "--start-date", "2026-01-01", "--end-date", "2026-01-02")
    assert broken.returncode != 0
    message = broken.stderr[broken.stderr.index("Dag 'broken' could not be found") :]
    assert "it may be in a file that failed to import:" in message
    assert "broken_dag.py" in message
    assert "ZeroDivisionError: division by zero" in message
    assert "AirflowException" not in broken.stderr
