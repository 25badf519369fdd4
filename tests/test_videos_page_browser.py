"""The Videos page in a real browser: chromium (Debian) driven by Playwright, against a real
``airflow api-server`` (Airflow 3, SQLite) whose runs saved videos from the emulator.

Set-up on a fresh machine (done here when missing): ``apt-get install -y chromium`` (as root) and a
virtual environment with Playwright from PyPI (``.venv-browser`` in the repository, or the
interpreter named by ``VIDGEN_PLAYWRIGHT_PYTHON``). Playwright's own browser download is never used.
Select with ``pytest -m browser``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import venv
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_vidgen.testing.emulator import Emulator
from tests.conftest import AIRFLOW, SECRET_KEY, Run, conn_json

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_dags"
PAGE_DAGS = Path(__file__).resolve().parent / "videos_page"
DRIVER = PAGE_DAGS / "driver.py"
CHROMIUM = os.environ.get("VIDGEN_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("VIDGEN_SCREENSHOT_DIR", ROOT / "docs"))
USERS = {"admin": "admin-pw-5c1e"}


def _airflow_3() -> bool:
    from airflow import __version__

    return int(__version__.split(".", 1)[0]) >= 3


if not _airflow_3():
    pytest.skip("the Videos page is an Airflow 3 API server plugin", allow_module_level=True)


def _chromium() -> str:
    if not Path(CHROMIUM).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "chromium"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            # A fresh image may have no package lists yet.
            subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True, timeout=900)
            subprocess.run(install, env=env, check=True, capture_output=True, timeout=900)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium is not installed at {CHROMIUM} (Debian: apt-get install -y chromium)")
    return CHROMIUM


def _playwright_python() -> str:
    named = os.environ.get("VIDGEN_PLAYWRIGHT_PYTHON")
    if named:
        return named
    home = ROOT / ".venv-browser"
    python = home / "bin" / "python"
    probe = [str(python), "-c", "import playwright.sync_api"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        venv.create(home, with_pip=True, clear=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "playwright>=1.40"],
            check=True,
            capture_output=True,
            timeout=900,
        )
    return str(python)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url() -> str:
    """Where the API server will listen (known to the tasks: their extra links point there)."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def saved_runs(dags_test_in: Any, base_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs that saved videos: the daily pipeline on two days (2 videos each) and one clip DAG."""
    output = tmp_path_factory.mktemp("saved-videos")
    env = {"VIDGEN_EXAMPLE_OUTPUT": f"file://{output}", "AIRFLOW__API__BASE_URL": base_url}
    runs = {
        "pipeline-1": dags_test_in(EXAMPLES)("example_vidgen_daily_pipeline", "2026-03-04", **env),
        "pipeline-2": dags_test_in(EXAMPLES)("example_vidgen_daily_pipeline", "2026-03-05", **env),
        "clip": dags_test_in(PAGE_DAGS)("videos_page_clips", "2026-03-06", **env),
    }
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.output[-3000:])
    return {"output": output, "runs": runs}


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A metadata database of this module's own: only its runs' videos are listed."""
    home = tmp_path_factory.mktemp("videos-page-home")
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return home


@pytest.fixture(scope="module")
def dags_test_in(airflow_home: Path) -> Iterator[Any]:
    """``dags_test_in(folder)(dag_id, logical_date, **env)``: ``airflow dags test`` against one emulator."""
    with Emulator() as emulator:
        emulator.api_key = SECRET_KEY

        def in_folder(dags_folder: Path) -> Any:
            def run(dag_id: str, logical_date: str, **env_extra: str) -> Run:
                env = {
                    **os.environ,
                    "AIRFLOW_HOME": str(airflow_home),
                    "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW_CONN_VIDGEN_DEFAULT": conn_json(emulator),
                    "VIDGEN_EXAMPLE_POLL_INTERVAL": "0.2",
                    **env_extra,
                }
                env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
                command = [AIRFLOW, "dags", "test", dag_id, logical_date]
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
                return Run.read(done, airflow_home, dag_id)

            return run

        yield in_folder


@pytest.fixture(scope="module")
def api_server(
    airflow_home: Path, base_url: str, saved_runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real ``airflow api-server`` on loopback (SimpleAuthManager, one user), stopped afterwards."""
    port = int(base_url.rsplit(":", 1)[1])
    work = tmp_path_factory.mktemp("api-server")
    passwords = work / "passwords.json"
    passwords.write_text(json.dumps(USERS))
    plugins = work / "plugins"
    plugins.mkdir()
    if not any(ep.name == "vidgen" for ep in entry_points(group="airflow.plugins")):
        # Not installed from this checkout (e.g. run from a source tree): load the plugin from a plugins folder.
        (plugins / "vidgen_plugin.py").write_text("from airflow_provider_vidgen.plugins import VidgenPlugin\n")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{name}:admin" for name in USERS),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": "videos-page-test-secret-0123456789abcdef",
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    log = (work / "api-server.log").open("w")
    server = subprocess.Popen(
        [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = base_url
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("api-server did not become healthy:\n" + (work / "api-server.log").read_text()[-4000:])
            time.sleep(0.2)  # a poll interval of a bounded wait, not a wait for a condition
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def token(api_server: str) -> str:
    answer = requests.post(
        f"{api_server}/auth/token", json={"username": "admin", "password": USERS["admin"]}, timeout=30
    )
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["access_token"])


def test_api_refuses_anonymous_and_forged_uris(api_server: str, token: str, saved_runs: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    listing = requests.get(f"{api_server}/vidgen/api/videos", headers=auth, timeout=30)
    assert listing.status_code == 200, listing.text
    videos = listing.json()["videos"]
    assert len(videos) == 5
    uri = videos[0]["uri"]
    assert requests.get(f"{api_server}/vidgen/api/videos", timeout=30).status_code in (401, 403)
    assert requests.get(f"{api_server}/vidgen/api/stream", params={"uri": uri}, timeout=30).status_code in (401, 403)
    assert requests.get(f"{api_server}/vidgen/", timeout=30).status_code in (401, 403)
    forged = [
        "file:///etc/passwd",
        uri.rsplit("/", 1)[0] + "/../../../../etc/passwd",
        uri + "/../../teaser.mp4",
        uri.replace("file://", "file:///.."),
    ]
    for candidate in forged:
        answer = requests.get(f"{api_server}/vidgen/api/stream", params={"uri": candidate}, headers=auth, timeout=30)
        assert answer.status_code == 404, (candidate, answer.status_code)
    ranged = requests.get(
        f"{api_server}/vidgen/api/stream", params={"uri": uri}, headers={**auth, "Range": "bytes=10-19"}, timeout=30
    )
    assert ranged.status_code == 206
    assert ranged.headers["Content-Type"] == "video/mp4"
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{videos[0]['bytes']}"
    assert ranged.content == Path(uri.removeprefix("file://")).read_bytes()[10:20]
    # The "Video" extra link of each kind of task opens its generation's entry on the page.
    clip, pipeline = saved_runs["runs"]["clip"], saved_runs["runs"]["pipeline-2"]
    for run, dag_id, task_id, generation_id in [
        (clip, "videos_page_clips", "clip", clip.xcom[("clip", -1, "generation_id")]),
        (pipeline, "example_vidgen_daily_pipeline", "create_highlight", None),
        (pipeline, "example_vidgen_daily_pipeline", "wait_highlight", None),
        (pipeline, "example_vidgen_daily_pipeline", "save_highlight", None),
        (pipeline, "example_vidgen_daily_pipeline", "teaser", pipeline.xcom[("teaser", -1, "generation_id")]),
    ]:
        generation_id = generation_id or pipeline.xcom[("create_highlight", -1, "generation_id")]
        links = requests.get(
            f"{api_server}/api/v2/dags/{dag_id}/dagRuns/{run.run_id}/taskInstances/{task_id}/links",
            headers=auth,
            timeout=30,
        )
        assert links.status_code == 200, links.text
        assert links.json()["extra_links"] == {"Video": f"{api_server}/vidgen/?generation_id={generation_id}"}
    for video in videos:  # no key, no temporary URL in what the page is given
        assert "sk-e2e" not in json.dumps(video)
        assert "/files/" not in json.dumps(video)


def test_videos_page_in_chromium(api_server: str, token: str, saved_runs: dict[str, Any]) -> None:
    python = _playwright_python()
    clip_task = f"/dags/videos_page_clips/runs/{saved_runs['runs']['clip'].run_id}/tasks/clip"
    chromium = _chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [python, str(DRIVER), api_server, token, str(SCREENSHOTS), "videos_page_clips", clip_task],
        env={**os.environ, "VIDGEN_CHROMIUM": chromium},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["rows"] == 5
    assert found["dag_ids"][0] == "videos_page_clips"  # newest first
    assert sorted(set(found["dag_ids"])) == ["example_vidgen_daily_pipeline", "videos_page_clips"]
    assert set(found["dag_options"]) == {"", "example_vidgen_daily_pipeline", "videos_page_clips"}
    assert any(isinstance(d, (int, float)) and d > 0 for d in found["durations"])
    assert found["filtered_dag_ids"] == ["videos_page_clips"]
    assert found["rows_in_2001"] == 0
    assert found["rows_today"] == 5
    assert found["nav_has_videos"]
    clip_id = saved_runs["runs"]["clip"].xcom[("clip", -1, "generation_id")]
    assert found["link_href"] == f"{api_server}/vidgen/?generation_id={clip_id}"
    assert found["linked_rows"] == [clip_id]
    for name in ("videos-page.png", "videos-page-in-airflow.png", "video-extra-link.png"):
        assert (SCREENSHOTS / name).stat().st_size > 0
