"""Create operators: validation at construction and at run time, XComs, waiting (emulator on loopback)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_vidgen.exceptions import (
    VidgenGenerationFailedError,
    VidgenValidationError,
    VidgenWaitTimeoutError,
)
from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline

FAST = {"poll_interval": 0.05, "timeout": 30}


def test_static_bad_input_is_a_dag_import_error() -> None:
    with pytest.raises(VidgenValidationError, match=r"duration: .*4 to 15"):
        VideosCreateOperator(task_id="t", prompt="cat", duration=20)
    with pytest.raises(VidgenValidationError, match="images"):
        StarVideosCreateOperator(task_id="t", prompt="cat", images=["ftp://a"])
    with pytest.raises(VidgenValidationError, match="last_frame_image"):
        VideosCreateOperator(task_id="t", prompt="cat", duration=5, image="https://a/1.png")


def test_jinja_in_a_field_that_is_not_templated_fails_at_import() -> None:
    with pytest.raises(VidgenValidationError, match="ratio"):
        VideosCreateOperator(task_id="t", prompt="{{ ds }}", duration=5, ratio="{{ params.ratio }}")


def test_static_fields_checked_even_when_others_are_templated() -> None:
    with pytest.raises(VidgenValidationError, match="duration") as info:
        VideosCreateOperator(task_id="t", prompt="{{ ds }}", duration=20)
    assert "prompt" not in str(info.value)
    # The templated field's own problems wait for run time: "{{ params.d }}" is not a number yet.
    VideosCreateOperator(task_id="t", prompt="cat", duration="{{ params.d }}")
    # Cross-field rules wait too when a field they involve is templated.
    VideosCreateOperator(task_id="t", prompt="cat", duration=5, image="{{ params.first }}")


def test_templated_input_is_validated_at_run_time(context: dict[str, Any], emulator_conn: Emulator) -> None:
    op = VideosCreateOperator(task_id="t", prompt="{{ ds }}", duration="{{ params.d }}")  # no error yet
    op.prompt, op.duration = "a cat on 2026-01-01", "99"  # what rendering would produce
    with pytest.raises(VidgenValidationError) as info:
        op.execute(context)
    assert isinstance(info.value, AirflowFailException)  # fails the task without retries
    assert "duration" in str(info.value)
    assert emulator_conn.requests == []  # nothing was sent


def test_template_fields() -> None:
    assert set(VideosCreateOperator.template_fields) == {
        "prompt",
        "duration",
        "image",
        "last_frame_image",
        "reference_images",
        "reference_videos",
        "vidgen_conn_id",
        "output_path",
    }
    assert set(StarVideosCreateOperator.template_fields) == {
        "prompt",
        "duration",
        "images",
        "vidgen_conn_id",
        "output_path",
    }


def test_videos_create_returns_id_and_pushes_it(context: dict[str, Any], emulator_conn: Emulator) -> None:
    op = VideosCreateOperator(task_id="t", prompt="a cat", duration=5, model="videos_fast", ratio="9:16")
    generation_id = op.execute(context)
    assert generation_id.startswith("proj_")
    assert context["ti"].xcom == {"generation_id": generation_id}
    assert emulator_conn.creates()[0].body == {
        "model": "videos_fast",
        "prompt": "a cat",
        "duration": 5,
        "ratio": "9:16",
        "resolution": "720p",
    }
    assert emulator_conn.requests_to("result") == []  # no waiting by default


def test_wait_for_completion_pushes_video_url_and_duration(
    context: dict[str, Any], emulator_conn: Emulator, log_text: Any
) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.2, actual_duration=5.2))
    op = StarVideosCreateOperator(task_id="t", prompt="a city", wait_for_completion=True, **FAST)
    generation_id = op.execute(context)
    xcom = context["ti"].xcom
    assert xcom["generation_id"] == generation_id
    assert xcom["video_url"].startswith(f"{emulator_conn.download_base_url}/files/{generation_id}.mp4")
    assert xcom["actual_duration"] == 5.2
    logged = log_text()
    assert "model=starvideos_v3 mode=text-to-video duration=5s ratio=16:9" in logged
    assert f"Generation {generation_id}: processing -> completed after" in logged
    assert emulator_conn.api_key not in logged
    assert "expires=" not in logged  # a temporary URL's query string (a signature, maybe) is not logged


def test_failed_generation_fails_with_api_error_and_id(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0.1, outcome="failed", error="prompt rejected"))
    op = VideosCreateOperator(task_id="t", prompt="x", duration=4, wait_for_completion=True, **FAST)
    with pytest.raises(VidgenGenerationFailedError, match=r"proj_\d+ failed: prompt rejected"):
        op.execute(context)
    assert "generation_id" in context["ti"].xcom  # pushed before waiting
    assert "video_url" not in context["ti"].xcom


def test_timeout_fails_with_the_id(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=3600))
    op = VideosCreateOperator(
        task_id="t",
        prompt="x",
        duration=4,
        wait_for_completion=True,
        poll_interval=0.05,
        timeout=timedelta(seconds=0.3),
    )
    with pytest.raises(VidgenWaitTimeoutError) as info:
        op.execute(context)
    assert context["ti"].xcom["generation_id"] in str(info.value)
    assert "VideoGenerationSensor" in str(info.value)


def test_transient_errors_while_waiting_are_survived(context: dict[str, Any], emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1))
    emulator_conn.add_fault(Fault(kind="status", status=503, endpoint="result", times=8))
    op = VideosCreateOperator(task_id="t", prompt="x", duration=4, wait_for_completion=True, **FAST)
    op.execute(context)
    assert "video_url" in context["ti"].xcom
    assert len(emulator_conn.creates()) == 1


def test_mapped_operator_expands_over_prompts() -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("mapped", schedule=None, start_date=None) as dag:
        VideosCreateOperator.partial(task_id="create", duration=5).expand(prompt=["a", "b", "c"])
    assert "create" in dag.task_dict


@pytest.mark.parametrize("value", [0, -1])
def test_poll_interval_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        VideosCreateOperator(task_id="t", prompt="x", duration=5, poll_interval=value)
