"""``airflow vidgen plan``'s planner in process: rendering per run, outcomes, and what it never does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import DAG
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

pytestmark = pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="`airflow vidgen plan` needs Airflow 3")

DAY1 = pendulum.datetime(2026, 1, 1, tz="UTC")
DAY2 = pendulum.datetime(2026, 1, 2, tz="UTC")


def operators() -> tuple[Any, Any]:
    # Imported when used: another test reloads the operators module, and the planner recognises the
    # create operators of the module as it is now.
    from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator

    return VideosCreateOperator, StarVideosCreateOperator


def plan_of(dag: Any, start: Any = DAY1, end: Any = DAY2) -> Any:
    from airflow_provider_vidgen.cli.plan import build_plan, runs_between

    return build_plan(dag, runs_between(dag, start, end))


def items(plan: Any, task_id: str) -> list[Any]:
    return [item for item in plan.items if item.task_id == task_id]


def test_templates_render_per_run_with_the_run_s_dates_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    VideosCreateOperator = operators()[0]
    monkeypatch.setenv("AIRFLOW_VAR_PLAN_SUBJECT", "lighthouses")
    with DAG("plan_render", schedule="@daily", start_date=DAY1) as dag:
        VideosCreateOperator(
            task_id="daily",
            prompt="{{ var.value.plan_subject }} on {{ ds }} until {{ data_interval_end | ds }}",
            model="videos",
            duration="{{ 4 + logical_date.day }}",
        )
    daily = items(plan_of(dag), "daily")
    assert [item.request["prompt"] for item in daily] == [
        "lighthouses on 2026-01-01 until 2026-01-02",
        "lighthouses on 2026-01-02 until 2026-01-03",
    ]
    assert [(item.outcome, item.seconds) for item in daily] == [("create", 5), ("create", 6)]
    assert daily[0].run_id.startswith("backfill__2026-01-02")  # run after the end of the interval


def test_if_output_exists_fail_is_invalid_overwrite_is_a_create_and_a_folder_is_invalid(tmp_path: Path) -> None:
    VideosCreateOperator = operators()[0]
    (tmp_path / "2026-01-01.mp4").write_bytes(b"there")
    (tmp_path / "folder.mp4").mkdir()
    common: dict[str, Any] = {"prompt": "p", "model": "videos", "duration": 5}
    with DAG("plan_outputs", schedule="@daily", start_date=DAY1) as dag:
        VideosCreateOperator(
            task_id="fail", output_path=f"{tmp_path}/{{{{ ds }}}}.mp4", if_output_exists="fail", **common
        )
        VideosCreateOperator(
            task_id="overwrite", output_path=f"{tmp_path}/{{{{ ds }}}}.mp4", if_output_exists="overwrite", **common
        )
        VideosCreateOperator(task_id="folder", output_path=f"{tmp_path}/folder.mp4", **common)
    plan = plan_of(dag)
    fail = items(plan, "fail")
    assert [item.outcome for item in fail] == ["invalid", "create"]
    assert "if_output_exists='fail'" in fail[0].detail
    assert [item.outcome for item in items(plan, "overwrite")] == ["create", "create"]
    assert [item.outcome for item in items(plan, "folder")] == ["invalid", "invalid"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["2026-01-01.mp4", "folder.mp4"]  # nothing written


def test_xcom_templates_and_xcom_args_are_unknown_naming_the_upstream() -> None:
    VideosCreateOperator = operators()[0]
    from airflow.providers.common.compat.sdk import task

    with DAG("plan_unknown", schedule="@daily", start_date=DAY1) as dag:

        @task
        def subject() -> str:
            return "s"

        VideosCreateOperator(
            task_id="pull", prompt="{{ ti.xcom_pull(task_ids='make_prompt') }}", model="videos", duration=5
        )
        VideosCreateOperator(task_id="arg", prompt=subject(), model="videos", duration=5)
    plan = plan_of(dag, DAY1, DAY1)
    (pull,) = items(plan, "pull")
    assert (pull.outcome, pull.detail) == ("unknown", "reads the XCom of 'make_prompt' (known at run time)")
    (arg,) = items(plan, "arg")
    assert (arg.outcome, arg.detail) == ("unknown", "reads the XCom of 'subject' (known at run time)")


def test_a_template_that_does_not_render_and_a_mapped_value_out_of_range_are_invalid() -> None:
    VideosCreateOperator, StarVideosCreateOperator = operators()
    with DAG("plan_invalid", schedule="@daily", start_date=DAY1) as dag:
        VideosCreateOperator(task_id="undefined", prompt="{{ nope.attr }}", model="videos", duration=5)
        StarVideosCreateOperator.partial(task_id="mapped", prompt="p").expand(duration=[4, 99])
        StarVideosCreateOperator(task_id="default_duration", prompt="p")
    plan = plan_of(dag, DAY1, DAY1)
    (undefined,) = items(plan, "undefined")
    assert undefined.outcome == "invalid"
    assert undefined.detail == "rendering failed: 'nope' is undefined"
    mapped = items(plan, "mapped")
    assert [(item.map_index, item.outcome) for item in mapped] == [(0, "create"), (1, "invalid")]
    assert "duration" in mapped[1].detail
    (default,) = items(plan, "default_duration")
    assert (default.outcome, default.seconds) == ("create", 5)  # the API's default duration
    from airflow_provider_vidgen.cli.plan import verdict

    assert verdict(plan, None) == "Plan refused: 2 invalid request(s)"
    assert (
        verdict(plan, 1)
        == "Plan refused: 2 invalid request(s); 2 generations would be created, more than --max-creates 1"
    )


def test_the_command_is_registered_through_the_provider_info() -> None:
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_vidgen.cli import get_cli_commands
    from airflow_provider_vidgen.get_provider_info import get_provider_info

    assert get_provider_info()["cli"] == ["airflow_provider_vidgen.cli.get_cli_commands"]
    manager = ProvidersManager()
    assert "airflow-provider-vidgen" in manager.cli_command_providers
    (function,) = [f for f in manager.cli_command_functions if f.__module__ == "airflow_provider_vidgen.cli"]
    assert function is get_cli_commands
    (group,) = function()
    assert group.name == "vidgen"
    assert [command.name for command in group.subcommands] == ["plan"]
    flags = {flag for arg in next(iter(group.subcommands)).args for flag in arg.flags}
    assert {"dag_id", "--start-date", "--end-date", "--run-id", "--max-creates", "--json"} <= flags
