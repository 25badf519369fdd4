"""The emulator itself: documented bodies, server-side validation, faults, downloads, CLI, concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from airflow_provider_vidgen.testing.emulator import validate_starvideos, validate_videos


def post(emulator: Emulator, path: str, body: Any, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key or emulator.api_key}"}
    return requests.post(emulator.base_url + path, json=body, headers=headers, timeout=5)


def get(emulator: Emulator, path: str) -> requests.Response:
    return requests.get(emulator.base_url + path, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=5)


def test_documented_bodies(vidgen_emulator: Emulator) -> None:
    answer = post(vidgen_emulator, "/v1/videos/videos", {"model": "videos", "prompt": "p", "duration": 5}).json()
    assert answer["code"] == "0"
    assert answer["msg"] is None
    project_id = answer["data"]["projectId"]
    star = post(vidgen_emulator, "/v1/starvideos/videos", {"model": "starvideos_v3", "prompt": "p"}).json()
    assert set(star) == {"id", "object", "created", "model", "status", "error"}
    assert star["status"] == "queued"
    assert star["object"] == "video"
    result = get(vidgen_emulator, f"/v1/result/{project_id}").json()
    assert set(result) == {"id", "object", "created", "model", "status", "video_url", "error"}
    vidgen_emulator.advance(100)
    result = get(vidgen_emulator, f"/v1/result/{project_id}").json()
    assert result["status"] == "completed"
    assert result["actualDuration"] == 5
    assert result["video_url"].startswith(vidgen_emulator.download_base_url)


def test_bearer_key_checked(vidgen_emulator: Emulator) -> None:
    response = post(vidgen_emulator, "/v1/videos/videos", {"model": "videos", "prompt": "p", "duration": 5}, "bad")
    assert response.status_code == 401
    assert vidgen_emulator.generations == []
    assert requests.get(vidgen_emulator.base_url + "/v1/result/x", timeout=5).status_code == 401


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"model": "videos", "prompt": "p", "duration": 3}, "duration"),
        ({"model": "videos", "prompt": "p", "duration": 5, "last_frame_image": "http://a"}, "unknown parameter"),
        ({"model": "videos", "prompt": "p", "duration": 5, "image": "http://a"}, "together"),
        ({"model": "videos", "prompt": "p" * 1501, "duration": 5}, "1500"),
        ({"model": "videos", "prompt": "p", "duration": 5, "referenceImages": ["http://a"] * 5}, "at most 4"),
        (
            {
                "model": "videos",
                "prompt": "p",
                "duration": 5,
                "image": "http://a",
                "lastFrameImage": "http://b",
                "referenceVideos": ["http://v"],
            },
            "cannot be combined",
        ),
    ],
)
def test_videos_server_validation(vidgen_emulator: Emulator, body: dict[str, Any], problem: str) -> None:
    response = post(vidgen_emulator, "/v1/videos/videos", body)
    assert response.status_code == 400
    assert response.json()["code"] != "0"
    assert problem in response.json()["msg"]
    assert vidgen_emulator.generations == []


def test_starvideos_server_ignores_extra_images_as_documented() -> None:
    assert validate_starvideos({"model": "starvideos_v3", "prompt": "p", "images": ["http://a"] * 3}) is None
    assert "duration" in (validate_starvideos({"model": "starvideos_v3", "prompt": "p", "duration": 2}) or "")
    assert validate_videos({"model": "videos", "prompt": "p", "duration": 15}) is None


def test_faults_apply_to_matching_endpoint_and_count(vidgen_emulator: Emulator) -> None:
    vidgen_emulator.add_fault(Fault(kind="status", status=429, retry_after="3", endpoint="result", times=2))
    body = {"model": "videos", "prompt": "p", "duration": 5}
    project_id = post(vidgen_emulator, "/v1/videos/videos", body).json()["data"]["projectId"]
    first = get(vidgen_emulator, f"/v1/result/{project_id}")
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "3"
    assert get(vidgen_emulator, f"/v1/result/{project_id}").status_code == 429
    assert get(vidgen_emulator, f"/v1/result/{project_id}").status_code == 200
    assert [r.fault for r in vidgen_emulator.requests_to("result")] == ["status", "status", None]


def test_download_serves_a_real_mp4_and_expires(vidgen_emulator: Emulator) -> None:
    vidgen_emulator.url_ttl = 60
    vidgen_emulator.set_timeline(Timeline(queued_for=0, processing_for=0))
    project_id = post(vidgen_emulator, "/v1/videos/videos", {"model": "videos", "prompt": "p", "duration": 5}).json()[
        "data"
    ]["projectId"]
    url = get(vidgen_emulator, f"/v1/result/{project_id}").json()["video_url"]
    video = requests.get(url, timeout=5)
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"  # ISO base media file
    vidgen_emulator.advance(61)
    assert requests.get(url, timeout=5).status_code == 403
    (download, expired) = vidgen_emulator.requests_to("download")
    assert download.authorization is None
    assert expired.status == 403
    vidgen_emulator.url_ttl = 3600


def test_command_line(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_vidgen.testing", "--url-file", str(url_file), "--queued-for", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not url_file.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        base_url = url_file.read_text().strip()
        assert process.stdout is not None
        assert process.stdout.readline().strip() == base_url
        origin = base_url.removesuffix("/kyyReactApiServer")
        requests.post(origin + "/_emulator/fault", json={"kind": "envelope", "code": "9", "msg": "busy"}, timeout=5)
        headers = {"Authorization": "Bearer test-key"}
        answer = requests.post(
            base_url + "/v1/videos/videos",
            json={"model": "videos", "prompt": "p", "duration": 5},
            headers=headers,
            timeout=5,
        ).json()
        assert answer == {"code": "9", "msg": "busy", "data": None}
        log = requests.get(origin + "/_emulator/requests", timeout=5).json()
        assert [entry["endpoint"] for entry in log] == ["videos_create"]
        assert log[0]["fault"] == "envelope"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert process.returncode == 0


def test_holds_many_concurrent_keep_alive_connections(vidgen_emulator: Emulator) -> None:
    """1,000 clients, each with its own kept-alive connection, all open at once."""
    clients = 1000
    project_id = post(vidgen_emulator, "/v1/videos/videos", {"model": "videos", "prompt": "p", "duration": 5}).json()[
        "data"
    ]["projectId"]
    url = f"{vidgen_emulator.base_url}/v1/result/{project_id}"
    headers = {"Authorization": f"Bearer {vidgen_emulator.api_key}"}

    async def main() -> list[int]:
        sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(clients)]
        try:

            async def twice(session: aiohttp.ClientSession) -> list[int]:
                statuses = []
                for _ in range(2):  # the second request reuses the connection
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        statuses.append(response.status)
                return statuses

            results = await asyncio.wait_for(asyncio.gather(*(twice(s) for s in sessions)), 60)
            return [status for pair in results for status in pair]
        finally:
            await asyncio.gather(*(s.close() for s in sessions))

    statuses = asyncio.run(main())
    assert statuses == [200] * (2 * clients)
    assert len(vidgen_emulator.connections("result")) == clients


def test_operator_modules_do_not_import_the_emulator() -> None:
    code = (
        "import sys; import airflow_provider_vidgen.operators.vidgen, airflow_provider_vidgen.sensors.vidgen; "
        "print('airflow_provider_vidgen.testing' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True)
    assert out.stdout.split()[-1] == "False"


def test_reset_keeps_the_initial_timeline_and_bad_admin_calls_are_400() -> None:
    with Emulator(timeline=Timeline(queued_for=42)) as emulator:
        emulator.set_timeline(Timeline(queued_for=1))
        emulator.reset()
        post(emulator, "/v1/videos/videos", {"model": "videos", "prompt": "p", "duration": 5})
        assert emulator.generations[0].timeline.queued_for == 42
        origin = emulator.base_url.removesuffix("/kyyReactApiServer")
        bad = requests.post(origin + "/_emulator/fault", json={"kind": "nonsense"}, timeout=5)
        assert bad.status_code == 400


def test_stats_count_creates_reads_downloads_and_faults_per_family_and_id(vidgen_emulator: Emulator) -> None:
    emu = vidgen_emulator
    origin = emu.base_url.removesuffix("/kyyReactApiServer")
    first = post(emu, "/v1/videos/videos", {"model": "videos", "prompt": "p", "duration": 5}).json()["data"][
        "projectId"
    ]
    assert post(emu, "/v1/videos/videos", {"model": "videos", "prompt": "p", "duration": 99}).status_code == 400
    star = post(emu, "/v1/starvideos/videos", {"model": "starvideos_v3", "prompt": "p"}).json()["id"]
    emu.add_fault(Fault(kind="status", status=503, endpoint="result"))
    emu.add_fault(Fault(kind="drop", endpoint="starvideos_create", times=3))
    assert get(emu, f"/v1/result/{first}").status_code == 503  # the fault, before the id is looked up
    assert get(emu, f"/v1/result/{first}").status_code == 200
    assert get(emu, "/v1/result/nobody").status_code == 404
    assert requests.get(f"{emu.base_url}/v1/result/{star}", timeout=5).status_code == 401
    with pytest.raises(requests.ConnectionError):
        post(emu, "/v1/starvideos/videos", {"model": "starvideos_v3", "prompt": "p"})
    emu.advance(100)
    url = get(emu, f"/v1/result/{star}").json()["video_url"]
    assert requests.get(url, timeout=5).content == emu.video_content()

    stats = requests.get(origin + "/_emulator/stats", timeout=5).json()
    assert stats == emu.stats()
    assert stats["requests"] == {"videos_create": 2, "starvideos_create": 2, "result": 5, "download": 1}
    assert stats["answers"] == {"200": 5, "400": 1, "401": 1, "404": 1, "503": 1, "none": 1}
    assert stats["unauthorized"] == 1
    assert stats["creates"] == {"videos": {"requests": 2, "created": 1}, "starvideos": {"requests": 2, "created": 1}}
    assert stats["reads"] == {"videos": 2, "starvideos": 2, "unknown": 1}
    assert stats["generations"] == {
        first: {"family": "videos", "status": "completed", "reads": 2, "downloads": 0},
        star: {"family": "starvideos", "status": "completed", "reads": 2, "downloads": 1},
    }
    assert stats["faults"] == {
        "served": {"status": 1, "drop": 1},
        "by_endpoint": {"result": 1, "starvideos_create": 1},
        "pending": 2,
    }
    emu.reset()
    assert requests.get(origin + "/_emulator/stats", timeout=5).json()["requests"]["result"] == 0


def test_generations_list_names_family_status_and_timeline(vidgen_emulator: Emulator) -> None:
    emu = vidgen_emulator
    emu.queue_timeline(Timeline(queued_for=10, processing_for=5))
    first = post(emu, "/v1/videos/videos", {"model": "videos_fast", "prompt": "p", "duration": 5}).json()["data"]
    star = post(emu, "/v1/starvideos/videos", {"model": "starvideos_v3", "prompt": "p"}).json()["id"]
    origin = emu.base_url.removesuffix("/kyyReactApiServer")
    listed = requests.get(origin + "/_emulator/generations", timeout=5).json()
    assert [(g["id"], g["family"], g["model"], g["status"]) for g in listed] == [
        (first["projectId"], "videos", "videos_fast", "queued"),
        (star, "starvideos", "starvideos_v3", "queued"),
    ]
    assert listed[0]["done_at"] == listed[0]["created_at"] + 15
    assert listed[0]["timeline"]["queued_for"] == 10
    emu.advance(12)
    assert requests.get(origin + "/_emulator/generations", timeout=5).json()[0]["status"] == "processing"
