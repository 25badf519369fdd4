"""OpenLineage of the operators, in process against the emulator (the end-to-end events: test_observability_e2e)."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen.exceptions import VidgenGenerationFailedError
from airflow_provider_vidgen.lineage import RUN_FACET_NAME, dataset_name, prompt_digest
from airflow_provider_vidgen.operators.vidgen import (
    StarVideosCreateOperator,
    VideoDownloadOperator,
    VideosCreateOperator,
)
from airflow_provider_vidgen.testing import Emulator, Timeline

needs_openlineage = pytest.mark.skipif(
    importlib.util.find_spec("airflow.providers.openlineage") is None,
    reason="needs apache-airflow-providers-openlineage (the test extra)",
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///data/videos/a.mp4", ("file", "/data/videos/a.mp4")),
        ("/data/videos/a b.mp4", ("file", "/data/videos/a b.mp4")),
        ("file:///data/videos/a%20b.mp4", ("file", "/data/videos/a b.mp4")),
        ("s3://bucket/videos/a.mp4", ("s3://bucket", "videos/a.mp4")),
        ("s3a://bucket/videos/a.mp4", ("s3://bucket", "videos/a.mp4")),
        ("gs://bucket/a.mp4", ("gs://bucket", "a.mp4")),
        ("gcs://bucket/a.mp4", ("gs://bucket", "a.mp4")),
        (
            "abfss://container@account.dfs.core.windows.net/v/a.mp4",
            ("abfss://container@account.dfs.core.windows.net", "v/a.mp4"),
        ),
        (
            "wasbs://other:pw@account.blob.core.windows.net/a.mp4",
            ("wasbs://other@account.blob.core.windows.net", "a.mp4"),
        ),
        ("https://user:pw@img.example.com:8443/r/a.png?sig=X#f", ("https://img.example.com:8443", "/r/a.png")),
        ("HTTPS://IMG.example.com/a.png", ("https://img.example.com", "/a.png")),
    ],
)
def test_dataset_names_follow_the_openlineage_naming_spec(uri: str, expected: tuple[str, str]) -> None:
    assert dataset_name(uri) == expected


def test_prompt_is_reported_as_a_hash_and_a_length() -> None:
    assert prompt_digest("ünïcode") == (hashlib.sha256("ünïcode".encode()).hexdigest(), 7)
    assert prompt_digest(None) == (None, None)


def test_operator_modules_do_not_import_openlineage() -> None:
    """The provider works without OpenLineage: nothing of it loads until the OpenLineage provider asks.

    (Airflow itself may read the OpenLineage provider's ``get_provider_info``: that is not the client.)
    """
    code = (
        "import sys\n"
        "from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator\n"
        "VideosCreateOperator(task_id='t', prompt='p', duration=5)\n"
        "ours = ('openlineage', 'airflow.providers.openlineage.extractors',"
        " 'airflow.providers.common.compat.openlineage')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(ours))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


@needs_openlineage
def test_a_generation_that_failed_reports_its_id_and_the_planned_output(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    import attr

    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0.2, outcome="failed"))
    op = VideosCreateOperator(
        task_id="t",
        prompt="first and last",
        duration=5,
        image="https://frames.example.com/1.png",
        last_frame_image="https://frames.example.com/2.png",
        output_path=str(tmp_path / "out.mp4"),
        poll_interval=0.1,
    )
    with pytest.raises(VidgenGenerationFailedError):
        op.execute(context)
    lineage = op.get_openlineage_facets_on_failure(None)
    assert names(lineage.outputs) == [("file", str(tmp_path / "out.mp4"))]
    assert names(lineage.inputs) == [("https://frames.example.com", "/1.png"), ("https://frames.example.com", "/2.png")]
    facet = attr.asdict(lineage.run_facets[RUN_FACET_NAME])
    assert facet["generationId"] == context["ti"].xcom["generation_id"]
    assert (facet["family"], facet["model"], facet["mode"], facet["duration"]) == (
        "Videos",
        "videos",
        "first-last-frame",
        5,
    )
    assert facet["actualDuration"] is None
    assert facet["bytes"] is None
    assert not (tmp_path / "out.mp4").exists()


@needs_openlineage
def test_starvideos_reports_only_the_two_images_it_sends(emulator_conn: Emulator, context: dict[str, Any]) -> None:
    import attr

    urls = [f"https://img.example.com/{i}.png" for i in range(3)]
    op = StarVideosCreateOperator(task_id="t", prompt="p", images=urls)
    op.execute(context)
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [d.name for d in lineage.inputs] == ["/0.png", "/1.png"]
    assert lineage.outputs == []
    facet = attr.asdict(lineage.run_facets[RUN_FACET_NAME])
    assert facet["generationId"] == context["ti"].xcom["generation_id"]
    assert (facet["mode"], facet["promptLength"]) == ("first-last-frame", 1)


@needs_openlineage
def test_a_kept_object_is_reported_as_the_output(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    import attr

    target = tmp_path / "kept.mp4"
    target.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    op = VideoDownloadOperator(task_id="t", generation_id="proj_1", destination=str(target), if_exists="skip")
    op.execute(context)
    lineage = op.get_openlineage_facets_on_complete(None)
    assert names(lineage.outputs) == [("file", str(target))]
    facet = attr.asdict(lineage.run_facets[RUN_FACET_NAME])
    assert (facet["generationId"], facet["bytes"]) == ("proj_1", target.stat().st_size)
    assert facet["promptSha256"] is None


@needs_openlineage
def test_the_facet_never_carries_a_password_of_the_saved_uri() -> None:
    import attr

    from airflow_provider_vidgen.lineage import note, operator_lineage

    op = VideoDownloadOperator(task_id="t", generation_id="proj_1", destination="ftp://me:S3CRET@files.example/v.mp4")
    note(op, manifest={"uri": "ftp://me:S3CRET@files.example/v.mp4", "bytes": 10, "generation_id": "proj_1"})
    lineage = operator_lineage(op)
    facet = attr.asdict(lineage.run_facets[RUN_FACET_NAME])
    assert facet["uri"] == "ftp://me@files.example/v.mp4"
    assert names(lineage.outputs) == [("ftp://files.example", "v.mp4")]
    assert "S3CRET" not in repr(lineage)
