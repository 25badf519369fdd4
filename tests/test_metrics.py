"""Metrics through Airflow's ``Stats``, configured for StatsD and received by a UDP socket on loopback.

The hook, the waits and the saver talk to the real emulator; Airflow's own StatsD backend sends.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen.exceptions import (
    VidgenAuthError,
    VidgenCreateOutcomeUnknownError,
    VidgenGenerationFailedError,
    VidgenRequestRejectedError,
)
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import StarVideosRequest, VideosRequest
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from airflow_provider_vidgen.waiting import wait_for_generation
from tests.conftest import conn_json

pytest.importorskip("statsd", reason="needs statsd (test extra), Airflow's StatsD backend")

Received = Callable[[], list[tuple[str, float, str]]]


def _use_statsd_from_config() -> Callable[[], None]:
    """Make Airflow's ``Stats`` pick its backend from the current ``[metrics]`` config; return the undo."""
    try:  # Airflow 3
        from airflow.sdk.observability.metrics.stats_utils import get_stats_factory
        from airflow.sdk.observability.stats import initialize

        initialize(factory=get_stats_factory(), export_legacy_names=False)
        return lambda: initialize(factory=get_stats_factory(), export_legacy_names=False)
    except ImportError:  # Airflow 2
        from airflow.metrics import statsd_logger
        from airflow.stats import Stats

        meta: Any = type(Stats)
        stats: Any = Stats
        # The backend is built on first use and kept on the class: reset both.
        factory, meta.factory, stats.instance = meta.factory, statsd_logger.get_statsd_logger, None

        def undo() -> None:
            meta.factory, stats.instance = factory, None

        return undo


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Received]:
    """A StatsD listener on loopback that Airflow's ``Stats`` sends to; call it for ``(name, value, type)``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        for key, value in {
            "STATSD_ON": "True",
            "STATSD_HOST": "127.0.0.1",
            "STATSD_PORT": str(sock.getsockname()[1]),
            "STATSD_PREFIX": "airflow",
        }.items():
            monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
        undo = _use_statsd_from_config()
        seen: list[tuple[str, float, str]] = []

        def received() -> list[tuple[str, float, str]]:
            while True:  # everything was sent before the call: read until the socket is quiet
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    break
                for line in data.decode().splitlines():
                    name, rest = line.split(":", 1)
                    value, kind = rest.split("|")[:2]
                    if name.startswith("airflow.vidgen."):
                        seen.append((name.removeprefix("airflow."), float(value), kind))
            return list(seen)

        try:
            yield received
        finally:
            monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON")
            undo()


def counters(received: Received) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name, value, kind in received():
        if kind == "c":
            totals[name] = totals.get(name, 0) + value
    return totals


@pytest.fixture
def hook(emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[VidgenHook]:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    hook = VidgenHook()
    yield hook
    hook.close()


def test_creates_count_by_family_and_model(statsd: Received, hook: VidgenHook) -> None:
    hook.create(VideosRequest.build(prompt="a", duration=5, model="videos_fast"))
    hook.create(VideosRequest.build(prompt="b", duration=5, model="videos_fast"))
    hook.create(StarVideosRequest.build(prompt="c", model="starvideos_v3"))
    assert counters(statsd) == {
        "vidgen.create.videos.videos_fast": 2,
        "vidgen.create.starvideos.starvideos_v3": 1,
    }


def test_unknown_outcome_and_refused_creates_count_apart(
    statsd: Received, hook: VidgenHook, emulator_conn: Emulator
) -> None:
    emulator_conn.add_fault(Fault(kind="drop", endpoint="create", after_create=True))
    with pytest.raises(VidgenCreateOutcomeUnknownError):
        hook.create(VideosRequest.build(prompt="a", duration=5, model="videos"))
    emulator_conn.add_fault(Fault(kind="status", status=422, endpoint="create", msg="bad request"))
    with pytest.raises(VidgenRequestRejectedError):
        hook.create(VideosRequest.build(prompt="b", duration=5, model="videos"))
    assert counters(statsd) == {
        "vidgen.create_unknown_outcome.videos.videos": 1,
        "vidgen.create_error.videos.VidgenRequestRejectedError": 1,
    }


def test_completion_counts_with_its_timers(statsd: Received, hook: VidgenHook, emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.3))
    generation_id = hook.create(VideosRequest.build(prompt="a", duration=5, model="videos"))
    wait_for_generation(hook.get_result, generation_id, poll_interval=0.1, timeout=30)
    received = statsd()
    assert counters(lambda: received)["vidgen.generation.completed.videos.videos"] == 1
    timers = {name: value for name, value, kind in received if kind == "ms"}
    assert set(timers) == {
        "vidgen.generation.detection_lag.videos.videos",
        "vidgen.generation.total_time.videos.videos",
    }
    # Seen in progress, then completed a poll later: the lag lies within the generation's lifetime.
    lag, total = (
        timers["vidgen.generation.detection_lag.videos.videos"],
        timers["vidgen.generation.total_time.videos.videos"],
    )
    assert 0 <= lag <= total


def test_failure_and_read_errors_count_by_class(statsd: Received, hook: VidgenHook, emulator_conn: Emulator) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.2, outcome="failed"))
    generation_id = hook.create(StarVideosRequest.build(prompt="a", model="starvideos_v3"))
    emulator_conn.add_fault(Fault(kind="status", status=503, endpoint="result", times=2))
    with pytest.raises(VidgenGenerationFailedError):
        wait_for_generation(hook.get_result, generation_id, poll_interval=0.1, timeout=30, max_consecutive_failures=5)
    emulator_conn.add_fault(Fault(kind="status", status=401, endpoint="result"))
    with pytest.raises(VidgenAuthError):
        wait_for_generation(hook.get_result, generation_id, poll_interval=0.1, timeout=30)
    totals = counters(statsd)
    assert totals["vidgen.generation.failed.starvideos.starvideos_v3"] == 1
    assert totals["vidgen.api.read_error.VidgenTransientError"] == 2
    assert totals["vidgen.api.read_error.VidgenAuthError"] == 1
    assert "vidgen.generation.completed.starvideos.starvideos_v3" not in totals


def test_saved_bytes(statsd: Received, hook: VidgenHook, emulator_conn: Emulator, tmp_path: Path) -> None:
    from airflow_provider_vidgen.saving import VideoSaver, as_storage_path

    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    generation_id = hook.create(VideosRequest.build(prompt="a", duration=5, model="videos"))
    wait_for_generation(hook.get_result, generation_id, poll_interval=0.1, timeout=30)
    saver = VideoSaver(hook.settings, logging.getLogger("test"))
    manifest = saver.save(generation_id, hook.get_result, as_storage_path(tmp_path / "a.mp4"), "overwrite")
    saver.save(generation_id, hook.get_result, as_storage_path(tmp_path / "a.mp4"), "skip")  # kept: not saved again
    totals = counters(statsd)
    assert manifest["bytes"] == len(emulator_conn.video_content()) > 0
    assert totals["vidgen.saved.bytes.videos.videos"] == manifest["bytes"]
    assert totals["vidgen.saved.videos.videos.videos"] == 1


def test_a_broken_metrics_backend_never_fails_the_task(
    monkeypatch: pytest.MonkeyPatch, hook: VidgenHook, emulator_conn: Emulator
) -> None:
    from airflow_provider_vidgen import metrics

    def broken() -> Any:
        raise OSError("statsd host unreachable")

    monkeypatch.setattr(metrics, "_stats", broken)
    generation_id = hook.create(VideosRequest.build(prompt="a", duration=5, model="videos"))
    assert [g.id for g in emulator_conn.generations] == [generation_id]
