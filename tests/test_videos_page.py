"""The Videos page's index, API and extra link, without a browser (Airflow 3 API server plugin).

The index reads the same tables as in a real deployment (dag_run, task_instance, xcom of Airflow 3,
on SQLite); the FastAPI app is called through Starlette's test client; the saved objects are real
files. The browser test (tests/test_videos_page_browser.py) covers the same page end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen.links import VideoLink, page_url

SAMPLE = Path(__file__).resolve().parent.parent / "airflow_provider_vidgen" / "testing" / "sample.mp4"


def _airflow_3() -> bool:
    from airflow import __version__

    return int(__version__.split(".", 1)[0]) >= 3


airflow_3_only = pytest.mark.skipif(not _airflow_3(), reason="the Videos page is an Airflow 3 API server plugin")


# -- the extra link (both Airflow versions) ---------------------------------------------------------


def test_every_operator_and_the_sensor_has_the_video_link() -> None:
    from airflow_provider_vidgen.operators.vidgen import (
        StarVideosCreateOperator,
        VideoDownloadOperator,
        VideosCreateOperator,
    )
    from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor

    for cls in (VideosCreateOperator, StarVideosCreateOperator, VideoDownloadOperator, VideoGenerationSensor):
        assert [link.name for link in cls.operator_extra_links] == ["Video"], cls


def test_provider_info_registers_the_link() -> None:
    from airflow_provider_vidgen.get_provider_info import get_provider_info

    assert get_provider_info()["extra-links"] == ["airflow_provider_vidgen.links.VideoLink"]


def _operator(kind: str) -> Any:
    from airflow_provider_vidgen.operators.vidgen import VideoDownloadOperator, VideosCreateOperator
    from airflow_provider_vidgen.sensors.vidgen import VideoGenerationSensor

    if kind == "create":
        return VideosCreateOperator(task_id="create", prompt="a cat", duration=5, output_path="/videos/a.mp4")
    if kind == "download":
        return VideoDownloadOperator(task_id="save", generation_id="gen-1", destination="/videos/a.mp4")
    return VideoGenerationSensor(task_id="wait", generation_id="gen-1")


XCOMS = {
    "create": {
        "generation_id": "gen-1",
        "video_url": "https://files.example/gen-1.mp4?sig=secret",
        "output": {"generation_id": "gen-1", "uri": "file:///videos/a.mp4"},
    },
    "download": {"return_value": {"generation_id": "gen-1", "uri": "file:///videos/a.mp4"}},
    "sensor": {"return_value": {"id": "gen-1", "video_url": "https://files.example/gen-1.mp4?sig=secret"}},
}


@pytest.mark.parametrize("kind", ["create", "download", "sensor"])
@pytest.mark.parametrize("airflow_3", [True, False])
def test_video_link(kind: str, airflow_3: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_vidgen import links

    monkeypatch.setattr(links, "_xcom", lambda ti_key, key: XCOMS[kind].get(key))
    monkeypatch.setattr(links, "_airflow_3", lambda: airflow_3)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
    url = VideoLink().get_link(_operator(kind), ti_key=None)  # type: ignore[arg-type]
    if airflow_3:
        assert url == "https://airflow.example/vidgen/?generation_id=gen-1"
    else:  # no Videos page on Airflow 2: the saved object, where the task saved one
        assert url == ("" if kind == "sensor" else "file:///videos/a.mp4")
    assert "sig=" not in url
    assert "files.example" not in url


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        ("ftp://me:S3CRET@files.example/a.mp4", "ftp://me@files.example/a.mp4"),
        ("javascript:alert(document.cookie)", ""),
        (" JavaScript:alert(1)", ""),
        ("java\tscript:alert(1)", ""),
        ("data:text/html,<script>alert(1)</script>", ""),
    ],
)
def test_video_link_on_airflow_2_is_a_safe_uri(recorded: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved URI as the Airflow 2 link: never a password, never a script the UI would run."""
    from airflow_provider_vidgen import links

    xcoms = {"return_value": {"generation_id": "gen-1", "uri": recorded}}
    monkeypatch.setattr(links, "_xcom", lambda ti_key, key: xcoms.get(key))
    monkeypatch.setattr(links, "_airflow_3", lambda: False)
    assert VideoLink().get_link(_operator("download"), ti_key=None) == expected  # type: ignore[arg-type]


def test_video_link_before_anything_was_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_vidgen import links

    monkeypatch.setattr(links, "_xcom", lambda ti_key, key: None)
    for airflow_3 in (True, False):
        monkeypatch.setattr(links, "_airflow_3", lambda airflow_3=airflow_3: airflow_3)
        assert VideoLink().get_link(_operator("create"), ti_key=None) == ""  # type: ignore[arg-type]


def test_page_url_quotes_the_id() -> None:
    assert page_url("a b&c", base_url="") == "/vidgen/?generation_id=a+b%26c"


# -- Range, Content-Type ------------------------------------------------------------------------------


@airflow_3_only
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole object
        ("items=0-1", None),
        ("bytes=0-" + "9" * 5000, (0, 999)),  # a last position of any length: up to the end
        ("bytes=-" + "9" * 5000, (0, 999)),  # a suffix longer than the object: all of it
        ("bytes=" + "0" * 5000 + "5-9", (5, 9)),
        ("bytes=\u0660-\u0661", None),  # non-ASCII digits are not a range: the whole object
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    from airflow_provider_vidgen.plugins.videos_app import parse_range

    assert parse_range(header, 1000) == expected


@airflow_3_only
@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=1000-1001", "bytes=-0", "bytes=5-2", "bytes=" + "9" * 5000 + "-"]
)
def test_unsatisfiable_range(header: str) -> None:
    from fastapi import HTTPException

    from airflow_provider_vidgen.plugins.videos_app import parse_range

    with pytest.raises(HTTPException) as raised:
        parse_range(header, 1000)
    assert raised.value.status_code == 416
    assert raised.value.headers == {"Content-Range": "bytes */1000"}


@airflow_3_only
def test_content_type() -> None:
    from airflow_provider_vidgen.plugins.videos_app import content_type_of

    assert content_type_of({"uri": "s3://b/a.mp4", "content_type": "video/mp4; codecs=avc1"}) == "video/mp4"
    assert content_type_of({"uri": "s3://b/a.webm", "content_type": "application/octet-stream"}) == "video/webm"
    assert content_type_of({"uri": "s3://b/a", "content_type": None}) == "video/mp4"
    assert content_type_of({"uri": "file:///a.html", "content_type": "text/html"}) == "video/mp4"


# -- the index and the API ----------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    from sqlalchemy import create_engine

    from airflow_provider_vidgen.plugins import index
    from tests.videos_page.seed import airflow_tables

    engine = create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    airflow_tables(engine)
    index.create_tables(engine)
    yield engine
    engine.dispose()


class User:
    def __init__(self, readable: set[str]) -> None:
        self.readable = readable


@pytest.fixture
def client(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The app with Airflow's session and auth manager swapped for the test DB and a stub user."""
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from airflow_provider_vidgen.plugins import videos_app

    @contextmanager
    def session() -> Iterator[Session]:
        with Session(engine) as s:
            yield s

    monkeypatch.setattr(videos_app, "_session", session)
    monkeypatch.setattr(videos_app, "_ensure_tables", lambda: None)
    monkeypatch.setattr(videos_app, "readable_dag_ids", lambda user: user.readable)
    app = videos_app.create_app()
    user = User({"dag_a", "dag_b"})
    app.dependency_overrides[videos_app.current_user] = lambda: user
    with TestClient(app) as test_client:
        test_client.user = user  # type: ignore[attr-defined]
        yield test_client


@airflow_3_only
def test_listing_newest_first_only_manifests_paginated(engine: Any, client: Any) -> None:
    from tests.videos_page.seed import add_runs

    add_runs(engine, 30, dag_ids=["dag_a", "dag_b"])
    first = client.get("/api/videos", params={"limit": 20}).json()
    assert [v["generation_id"] for v in first["videos"]] == [f"gen-{n}" for n in range(29, 9, -1)]
    assert first["has_more"] is True
    assert first["dag_ids"] == ["dag_a", "dag_b"]
    rest = client.get("/api/videos", params={"limit": 20, "offset": 20}).json()
    assert [v["generation_id"] for v in rest["videos"]] == [f"gen-{n}" for n in range(9, -1, -1)]
    assert rest["has_more"] is False
    video = first["videos"][0]  # gen-29: a VideoDownloadOperator manifest
    assert video["family"] == "Videos"
    assert video["model"] == "videos"
    assert video["uri"] == "file:///videos/dag_b/29.mp4"
    assert video["bytes"] == 1234
    assert video["actual_duration"] == 5.0
    assert client.get("/api/videos").json()["videos"][1]["family"] == "StarVideos"
    # The other tasks' XComs (a PythonOperator returning a dict with a "uri") are not videos.
    everything = client.get("/api/videos", params={"limit": 200}).json()["videos"]
    assert len(everything) == 30
    assert all(v["uri"] != "file:///etc/passwd" for v in everything)


@airflow_3_only
def test_filters(engine: Any, client: Any) -> None:
    from tests.videos_page.seed import T0, add_runs

    add_runs(engine, 6, dag_ids=["dag_a", "dag_b"])
    by_dag = client.get("/api/videos", params={"dag_id": "dag_a"}).json()["videos"]
    assert [v["generation_id"] for v in by_dag] == ["gen-4", "gen-2", "gen-0"]
    by_id = client.get("/api/videos", params={"generation_id": "gen-3"}).json()["videos"]
    assert [v["dag_id"] for v in by_id] == ["dag_b"]
    day = T0.date().isoformat()
    assert len(client.get("/api/videos", params={"since": day, "until": day}).json()["videos"]) == 6
    next_day = (T0 + timedelta(days=1)).date().isoformat()
    assert client.get("/api/videos", params={"since": next_day}).json()["videos"] == []
    assert client.get("/api/videos", params={"until": "2026-02-28"}).json()["videos"] == []


@airflow_3_only
def test_only_readable_dags(engine: Any, client: Any, tmp_path: Path) -> None:
    from tests.videos_page.seed import add_runs

    add_runs(engine, 4, dag_ids=["dag_a", "secret_dag"], root=tmp_path.as_uri())
    (tmp_path / "secret_dag").mkdir()
    (tmp_path / "secret_dag" / "1.mp4").write_bytes(SAMPLE.read_bytes())
    listed = client.get("/api/videos").json()
    assert {v["dag_id"] for v in listed["videos"]} == {"dag_a"}
    assert listed["dag_ids"] == ["dag_a"]
    assert client.get("/api/videos", params={"dag_id": "secret_dag"}).json()["videos"] == []
    secret = f"{tmp_path.as_uri()}/secret_dag/1.mp4"
    assert client.get("/api/stream", params={"uri": secret}).status_code == 404
    client.user.readable.add("secret_dag")
    assert client.get("/api/stream", params={"uri": secret}).status_code == 200


@airflow_3_only
def test_stream_ranges_and_missing_objects(engine: Any, client: Any, tmp_path: Path) -> None:
    from tests.videos_page.seed import add_runs

    add_runs(engine, 2, dag_ids=["dag_a"], root=tmp_path.as_uri())
    (tmp_path / "dag_a").mkdir()
    data = SAMPLE.read_bytes()
    (tmp_path / "dag_a" / "0.mp4").write_bytes(data)
    uri = f"{tmp_path.as_uri()}/dag_a/0.mp4"

    whole = client.get("/api/stream", params={"uri": uri})
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(len(data))

    part = client.get("/api/stream", params={"uri": uri}, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get("/api/stream", params={"uri": uri}, headers={"Range": "bytes=-16"})
    assert tail.content == data[-16:]
    beyond = client.get("/api/stream", params={"uri": uri}, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"

    # Recorded, but the object is gone (1.mp4 was never written): shown as missing.
    gone = client.get("/api/stream", params={"uri": f"{tmp_path.as_uri()}/dag_a/1.mp4"})
    assert gone.status_code == 404
    assert "no longer exists" in gone.json()["detail"]


@airflow_3_only
@pytest.mark.parametrize(
    "forged",
    [
        "file:///etc/passwd",
        "{root}/dag_a/../../../../etc/passwd",
        "{root}/dag_a/0.mp4/../0.mp4",
        "{root}/dag_a/0.mp4?",
        "{root}/dag_a/0.MP4",
        "{root}/dag_a/",
    ],
)
def test_stream_serves_only_recorded_uris(engine: Any, client: Any, tmp_path: Path, forged: str) -> None:
    from tests.videos_page.seed import add_runs

    add_runs(engine, 1, dag_ids=["dag_a"], root=tmp_path.as_uri())
    (tmp_path / "dag_a").mkdir()
    (tmp_path / "dag_a" / "0.mp4").write_bytes(b"RECORDED-BYTES")
    client.get("/api/videos")
    answer = client.get("/api/stream", params={"uri": forged.format(root=tmp_path.as_uri())})
    assert answer.status_code == 404
    assert b"RECORDED-BYTES" not in answer.content


@airflow_3_only
@pytest.mark.parametrize(
    "content",
    [
        b"[core]\nfernet_key = SECRET-FERNET\n",  # a configuration file
        b"-----BEGIN PRIVATE KEY-----\nSECRET\n",
        b"SQLite format 3\x00SECRET" + bytes(600),  # a binary file that is no video
    ],
)
def test_stream_serves_only_videos(engine: Any, client: Any, tmp_path: Path, content: bytes) -> None:
    """A manifest (an XCom anyone allowed to edit XComs can write) pointing at a file that is no video: not served."""
    from tests.videos_page.seed import add_runs

    add_runs(engine, 1, dag_ids=["dag_a"], root=tmp_path.as_uri())
    (tmp_path / "dag_a").mkdir()
    (tmp_path / "dag_a" / "0.mp4").write_bytes(content)
    uri = f"{tmp_path.as_uri()}/dag_a/0.mp4"
    for headers in ({}, {"Range": "bytes=0-"}, {"Range": "bytes=-100"}):
        answer = client.get("/api/stream", params={"uri": uri}, headers=headers)
        assert answer.status_code == 404, headers
        assert "not a video" in answer.json()["detail"]
        assert b"SECRET" not in answer.content


@airflow_3_only
def test_runs_after_the_first_sync_are_indexed(engine: Any, client: Any) -> None:
    """The second sync reads only the runs updated since the first (and still finds the new ones)."""
    from tests.videos_page.seed import add_runs

    add_runs(engine, 2, dag_ids=["dag_a"])
    assert len(client.get("/api/videos").json()["videos"]) == 2
    add_runs(engine, 3, dag_ids=["dag_a"], first_pk=100)
    assert [v["generation_id"] for v in client.get("/api/videos").json()["videos"]] == [
        "gen-2",
        "gen-1",
        "gen-0",
        "gen-1",
        "gen-0",
    ]


@airflow_3_only
def test_a_rerun_replaces_the_runs_videos(engine: Any, client: Any) -> None:
    """A cleared and re-run task: its run is read again and its rows replaced, not duplicated."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import update

    from tests.videos_page.seed import T0, add_runs, manifest

    add_runs(engine, 1, dag_ids=["dag_a"])
    assert [v["uri"] for v in client.get("/api/videos").json()["videos"]] == ["file:///videos/dag_a/0.mp4"]
    later = T0 + timedelta(days=3)
    with engine.begin() as connection:
        connection.execute(
            update(XComModel.__table__)
            .where(XComModel.__table__.c.key == "output")
            .values(value=manifest("file:///videos/dag_a/again.mp4", "gen-again"), timestamp=later)
        )
        connection.execute(update(DagRun.__table__).values(updated_at=later))
    assert [v["uri"] for v in client.get("/api/videos").json()["videos"]] == ["file:///videos/dag_a/again.mp4"]


@airflow_3_only
def test_a_deleted_run_is_no_longer_listed_nor_streamed(engine: Any, client: Any, tmp_path: Path) -> None:
    """Deleting a DAG run (its XComs go with it) removes its videos from the page and the stream."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import delete, select

    from tests.videos_page.seed import add_runs

    add_runs(engine, 2, dag_ids=["dag_a"], root=tmp_path.as_uri())
    (tmp_path / "dag_a").mkdir()
    (tmp_path / "dag_a" / "0.mp4").write_bytes(SAMPLE.read_bytes())
    uri = f"{tmp_path.as_uri()}/dag_a/0.mp4"
    assert {v["uri"] for v in client.get("/api/videos").json()["videos"]} >= {uri}
    assert client.get("/api/stream", params={"uri": uri}).status_code == 200
    with engine.begin() as connection:
        run_pk = connection.execute(
            select(XComModel.__table__.c.dag_run_id).where(XComModel.__table__.c.value.contains("0.mp4"))
        ).scalar()
        connection.execute(delete(XComModel.__table__).where(XComModel.__table__.c.dag_run_id == run_pk))
        connection.execute(delete(DagRun.__table__).where(DagRun.__table__.c.id == run_pk))
    listed = [v["uri"] for v in client.get("/api/videos").json()["videos"]]
    assert listed == [f"{tmp_path.as_uri()}/dag_a/1.mp4"]
    assert client.get("/api/stream", params={"uri": uri}).status_code == 404


@airflow_3_only
def test_anonymous_requests_are_refused() -> None:
    from fastapi.testclient import TestClient

    from airflow_provider_vidgen.plugins.videos_app import create_app

    with TestClient(create_app()) as anonymous:
        for path in ("/", "/api/videos", "/api/stream?uri=file:///etc/passwd"):
            assert anonymous.get(path).status_code == 401, path


@airflow_3_only
def test_plugin_registers_the_app_and_the_nav_entry() -> None:
    from airflow_provider_vidgen.plugins import VidgenPlugin

    (app,) = VidgenPlugin.fastapi_apps
    assert app["url_prefix"] == "/vidgen"
    (view,) = VidgenPlugin.external_views
    assert view["href"] == "/vidgen/"
    assert view["destination"] == "nav"
    assert view["name"] == "Videos"


def test_plugin_is_empty_on_airflow_2() -> None:
    from airflow_provider_vidgen.plugins import AIRFLOW_3, VidgenPlugin

    if AIRFLOW_3:
        pytest.skip("Airflow 3 has the page")
    assert VidgenPlugin.fastapi_apps == []
    assert VidgenPlugin.external_views == []
