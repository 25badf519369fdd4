"""End to end: OpenLineage events (the OpenLineage provider's file transport) and metrics (Airflow's StatsD
backend, received by a UDP socket on loopback) of an ``airflow dags test`` run against the emulator.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen.testing import Emulator, Timeline
from tests.conftest import SECRET_KEY

pytest.importorskip("airflow.providers.openlineage", reason="needs apache-airflow-providers-openlineage (test extra)")
pytest.importorskip("statsd", reason="needs statsd (test extra), Airflow's StatsD backend")

DAGS = Path(__file__).resolve().parent / "dags_observability"
PROMPT = "a cat and a dog walk on a beach at dawn"

pytestmark = pytest.mark.e2e


def read_datagrams(sock: socket.socket) -> list[str]:
    """Every StatsD line received so far (the sender is done: a short timeout ends the read)."""
    lines: list[str] = []
    sock.settimeout(1.0)
    while True:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return lines
        lines.extend(data.decode().splitlines())


@pytest.fixture
def observed_run(dags_test_in: Any, vidgen_emulator: Emulator, tmp_path: Path) -> Any:
    vidgen_emulator.set_timeline(Timeline(queued_for=0.2, processing_for=0.6, actual_duration=6.04))
    events_file = tmp_path / "openlineage.jsonl"
    output = tmp_path / "videos"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("127.0.0.1", 0))
        run = dags_test_in(DAGS)(
            "vidgen_observability",
            VIDGEN_TEST_OUTPUT=str(output),
            AIRFLOW__OPENLINEAGE__NAMESPACE="vidgen-tests",
            AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
                {"type": "file", "log_file_path": str(events_file), "append": True}
            ),
            AIRFLOW__METRICS__STATSD_ON="True",
            AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
            AIRFLOW__METRICS__STATSD_PORT=str(sock.getsockname()[1]),
            AIRFLOW__METRICS__STATSD_PREFIX="airflow",
        )
        statsd_lines = read_datagrams(sock)
    assert run.state == "success", run.output[-4000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return run, events, statsd_lines, output


def complete_event(events: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    found = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(f".{task_id}")]
    assert len(found) == 1, [(e["eventType"], e["job"]["name"]) for e in events]
    return found[0]


def test_lineage_and_metrics_of_a_run(observed_run: Any, vidgen_emulator: Emulator) -> None:
    """One run (to spare the CPU): its OpenLineage COMPLETE events, then its metrics."""
    run, events, lines, output = observed_run
    check_lineage(run, events, output, vidgen_emulator)
    check_metrics(lines, output)


def check_lineage(run: Any, events: list[dict[str, Any]], output: Path, vidgen_emulator: Emulator) -> None:
    created_id, star_id = run.xcom[("create", -1, "return_value")], run.xcom[("star", -1, "return_value")]
    assert {g.id for g in vidgen_emulator.generations} == {created_id, star_id}

    create = complete_event(events, "create")
    assert [(d["namespace"], d["name"]) for d in create["outputs"]] == [("file", str(output / "created.mp4"))]
    assert sorted((d["namespace"], d["name"]) for d in create["inputs"]) == [
        ("https://clips.example.com:8443", "/refs/walk.mp4"),
        ("https://images.example.com", "/refs/cat.png"),
        ("https://images.example.com", "/refs/dog.png"),
    ]
    facet = create["run"]["facets"]["vidgen"]
    manifest = run.xcom[("create", -1, "output")]
    assert {k: v for k, v in facet.items() if not k.startswith("_")} == {
        "generationId": created_id,
        "family": "Videos",
        "model": "videos_fast",
        "mode": "reference",
        "duration": 6,
        "actualDuration": 6.04,
        "promptSha256": hashlib.sha256(PROMPT.encode()).hexdigest(),
        "promptLength": len(PROMPT),
        "uri": manifest["uri"],
        "bytes": manifest["bytes"],
        "sha256": manifest["sha256"],
    }

    download = complete_event(events, "download")
    assert [(d["namespace"], d["name"]) for d in download["outputs"]] == [("file", str(output / "downloaded.mp4"))]
    assert download["inputs"] == []
    assert download["run"]["facets"]["vidgen"]["generationId"] == created_id
    assert download["run"]["facets"]["vidgen"]["bytes"] == (output / "downloaded.mp4").stat().st_size

    star = complete_event(events, "star")
    assert star["outputs"] == []
    assert sorted(d["name"] for d in star["inputs"]) == ["/first.png", "/last.png"]
    star_facet = star["run"]["facets"]["vidgen"]
    assert (star_facet["generationId"], star_facet["family"], star_facet["mode"]) == (
        star_id,
        "StarVideos",
        "first-last-frame",
    )

    # Never the key, the prompt, a signature or a temporary video URL, in any event.
    everything = json.dumps(events)
    assert SECRET_KEY not in everything
    assert PROMPT not in everything
    assert "SIGNED-abc" not in everything
    assert vidgen_emulator.download_base_url not in everything


def check_metrics(lines: list[str], output: Path) -> None:
    ours = [line for line in lines if line.startswith("airflow.vidgen.")]

    def values(name: str, kind: str) -> list[float]:
        return [
            float(line.split(":")[1].split("|")[0])
            for line in ours
            if line.split(":")[0] == name and f"|{kind}" in line
        ]

    assert values("airflow.vidgen.create.videos.videos_fast", "c") == [1]
    assert values("airflow.vidgen.create.starvideos.starvideos_v3", "c") == [1]
    assert values("airflow.vidgen.generation.completed.videos.videos_fast", "c") == [1]
    assert values("airflow.vidgen.generation.completed.starvideos.starvideos_v3", "c") == [1]
    size = (output / "created.mp4").stat().st_size
    # The create's output_path and the download: two saves of the same video.
    assert values("airflow.vidgen.saved.bytes.videos.videos_fast", "c") == [size, size]
    assert values("airflow.vidgen.saved.videos.videos.videos_fast", "c") == [1, 1]
    for timer in ("detection_lag", "total_time"):
        (lag,) = values(f"airflow.vidgen.generation.{timer}.videos.videos_fast", "ms")
        assert lag >= 0
    assert not [line for line in ours if "unknown_outcome" in line or "read_error" in line]
