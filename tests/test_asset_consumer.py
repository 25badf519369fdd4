"""DAGs scheduled on the saving task's asset: one run may carry many videos; testing them offline."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen.exceptions import VidgenValidationError
from airflow_provider_vidgen.saving import CONF_KEY, saved_videos
from airflow_provider_vidgen.testing import Emulator

ASSET = "vidgen_consumer_test_videos"
T0 = datetime(2026, 3, 4, 6, 0, tzinfo=timezone.utc)


def manifest(name: str, **extra: Any) -> dict[str, Any]:
    return {"generation_id": f"proj_{name}", "uri": f"file:///videos/{name}.mp4", "sha256": name * 8, **extra}


def triggering_events(*extras_and_times: tuple[dict[str, Any], datetime]) -> dict[str, Any]:
    """The context entry Airflow gives a consumer run, built from this Airflow's own classes.

    Each event is reached through the asset and through an alias (as an event emitted through an
    ``AssetAlias`` is), so the same event shows up under two keys.
    """
    try:
        from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
        from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
    except ImportError:  # Airflow 2: a dict of dataset URI -> DatasetEvent rows
        from airflow.models.dataset import DatasetEvent

        events = [DatasetEvent(extra=extra, timestamp=at, source_task_id="save") for extra, at in extras_and_times]
        return {"triggering_dataset_events": {ASSET: events, "alias": list(events)}}
    references = [
        AssetEventDagRunReferenceResult(
            asset={"name": ASSET, "uri": ASSET, "extra": {}},
            extra=extra,
            source_task_id="save",
            source_dag_id="produce_videos",
            source_run_id=f"run_{i}",
            source_map_index=-1,
            source_aliases=[{"name": "alias"}],
            timestamp=at,
        )
        for i, (extra, at) in enumerate(extras_and_times)
    ]
    return {"triggering_asset_events": TriggeringAssetEventsAccessor.build(references)}


def test_one_run_carries_every_queued_video_oldest_first_each_once() -> None:
    context = triggering_events(
        (manifest("c"), T0 + timedelta(minutes=2)),
        (manifest("a"), T0),
        (manifest("kept", skipped=True), T0 + timedelta(minutes=1)),
        ({"note": "an event of another producer, without a manifest"}, T0 + timedelta(minutes=3)),
        (manifest("b"), T0 + timedelta(minutes=1)),
    )
    # Raw iteration sees every event through both keys: that is what the helper sorts out.
    raw = [event.extra for events in next(iter(context.values())).values() for event in events]
    assert len(raw) == 10
    assert [video["uri"] for video in saved_videos(context)] == [
        "file:///videos/a.mp4",
        "file:///videos/b.mp4",
        "file:///videos/c.mp4",
    ]
    with_kept = [video["generation_id"] for video in saved_videos(context, include_skipped=True)]
    assert with_kept == ["proj_a", "proj_kept", "proj_b", "proj_c"]


def test_a_run_without_events_reads_the_videos_from_its_conf() -> None:
    from types import SimpleNamespace

    run = SimpleNamespace(conf={CONF_KEY: [manifest("a"), manifest("b"), manifest("a")]})
    assert [video["uri"] for video in saved_videos({"dag_run": run})] == [
        "file:///videos/a.mp4",
        "file:///videos/b.mp4",
    ]
    assert saved_videos({"dag_run": None}) == []
    assert saved_videos({**triggering_events(), "dag_run": None}) == []

    bad = SimpleNamespace(conf={CONF_KEY: ["file:///videos/a.mp4"]})
    with pytest.raises(VidgenValidationError, match="vidgen_videos"):
        saved_videos({"dag_run": bad})


# -- offline, end to end: the producer's real asset events drive `airflow dags test` of the consumer --

PRODUCER = """
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Asset

from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator

VIDEOS = Asset("{asset}")

with DAG("produce_videos", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for name in ("a", "b"):
        VideosCreateOperator(
            task_id=f"create_{{name}}", prompt=name, duration=5, poll_interval=0.2,
            output_path=f"{output}/{{name}}.mp4", outlets=[VIDEOS],
        )
"""

CONSUMER = """
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Asset, task

from airflow_provider_vidgen.saving import saved_videos

VIDEOS = Asset("{asset}")

with DAG("publish_videos", schedule=[VIDEOS], start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def publish(**context):
        return [[video["uri"], video["sha256"]] for video in saved_videos(context)]

    publish()
"""


@pytest.mark.e2e
def test_consumer_dag_runs_offline_on_the_producers_events(
    dags_test_in: Any, vidgen_emulator: Emulator, airflow_home: Path, tmp_path: Path
) -> None:
    from airflow_provider_vidgen.testing.airflow_db import asset_events, latest_run, run_xcoms
    from tests.conftest import AIRFLOW

    dags = tmp_path / "dags"
    dags.mkdir()
    output = tmp_path / "videos"
    (dags / "produce_videos.py").write_text(textwrap.dedent(PRODUCER.format(asset=ASSET, output=f"file://{output}")))
    (dags / "publish_videos.py").write_text(textwrap.dedent(CONSUMER.format(asset=ASSET)))

    produced = dags_test_in(dags)("produce_videos", "2026-03-04", reserialize=True)
    assert produced.returncode == 0, produced.output[-3000:]
    # What a scheduled run of the consumer would receive: the manifests of the producer's asset events.
    manifests = [extra for _, extra in asset_events(airflow_home / "airflow.db", "produce_videos", produced.run_id)]
    assert sorted(m["uri"] for m in manifests) == [f"file://{output}/a.mp4", f"file://{output}/b.mp4"]

    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "publish_videos", "2026-03-05", "--conf", json.dumps({CONF_KEY: manifests})],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    run_id, state = latest_run(airflow_home / "airflow.db", "publish_videos")
    assert state == "success"
    published = run_xcoms(airflow_home / "airflow.db", "publish_videos", run_id)[("publish", -1, "return_value")]
    assert published == [[m["uri"], m["sha256"]] for m in manifests]
