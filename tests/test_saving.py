"""Saving videos: VideoDownloadOperator and output_path, against the emulator's download host."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_vidgen.connection import ConnectionSettings
from airflow_provider_vidgen.exceptions import VidgenError, VidgenGenerationFailedError, VidgenTransientError
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import GenerationResult, VideosRequest
from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideoDownloadOperator
from airflow_provider_vidgen.saving import VideoSaver, VidgenOutputExistsError, as_storage_path
from airflow_provider_vidgen.testing import Emulator, Fault, Timeline
from tests.conftest import conn_json


def finished(emulator: Emulator, **timeline: Any) -> str:
    emulator.queue_timeline(Timeline(**{"queued_for": 0, "processing_for": 0, **timeline}))
    return VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=6))


def download(generation_id: str, destination: Any, **kwargs: Any) -> VideoDownloadOperator:
    return VideoDownloadOperator(task_id="save", generation_id=generation_id, destination=destination, **kwargs)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_saves_bytes_and_manifest(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    generation_id = finished(emulator_conn, actual_duration=6.5)
    target = tmp_path / "out" / "video.mp4"
    manifest = download(generation_id, str(target)).execute(context)
    expected = emulator_conn.video_content()
    assert target.read_bytes() == expected
    assert target.read_bytes()[4:8] == b"ftyp"  # a real MP4
    assert manifest == {
        "generation_id": generation_id,
        "uri": f"file://{target}",
        "bytes": len(expected),
        "sha256": hashlib.sha256(expected).hexdigest(),
        "content_type": "video/mp4",
        "actual_duration": 6.5,
        "model": "videos",
    }
    assert leftovers(target.parent) == ["video.mp4"]  # no temporary file left behind


def test_reads_the_result_right_before_downloading(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    generation_id = finished(emulator_conn)
    download(generation_id, tmp_path / "a.mp4").execute(context)
    endpoints = [r.endpoint for r in emulator_conn.requests]
    assert endpoints == ["videos_create", "result", "download"]


def test_key_never_sent_to_the_download_host_even_across_redirects(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(Fault(kind="redirect", endpoint="download"))
    download(generation_id, tmp_path / "a.mp4").execute(context)
    downloads = emulator_conn.requests_to("download")
    assert [r.path.split("?")[0] for r in downloads] == [f"/files/{generation_id}.mp4", f"/blobs/{generation_id}.mp4"]
    assert [r.authorization for r in downloads] == [None, None]
    assert all(r.authorization == f"Bearer {emulator_conn.api_key}" for r in emulator_conn.requests_to("result"))
    assert (tmp_path / "a.mp4").read_bytes() == emulator_conn.video_content()


def test_expired_url_is_replaced_by_asking_again(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    generation_id = finished(emulator_conn)
    emulator_conn.url_ttl = -1  # every URL the API hands out has already expired...
    saver_log: list[str] = []

    class Log:
        def info(self, msg: str, *args: Any) -> None:
            saver_log.append(msg % args)

        def warning(self, msg: str, *args: Any) -> None:
            saver_log.append(msg % args)
            emulator_conn.url_ttl = 3600  # ...until the first refusal

    hook = VidgenHook()
    VideoSaver(hook.settings, Log()).save(generation_id, hook.get_result, as_storage_path(tmp_path / "a.mp4"))
    assert [r.status for r in emulator_conn.requests_to("download")] == [403, 200]
    assert len(emulator_conn.requests_to("result")) == 2  # asked again for a fresh URL
    first, second = (r.path for r in emulator_conn.requests_to("download"))
    assert first != second
    assert (tmp_path / "a.mp4").read_bytes() == emulator_conn.video_content()
    emulator_conn.url_ttl = 3600


def test_interrupted_download_leaves_nothing_and_the_retry_succeeds(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(Fault(kind="truncate", endpoint="download"))
    target = tmp_path / "v.mp4"
    manifest = download(generation_id, target).execute(context)
    assert [r.fault for r in emulator_conn.requests_to("download")] == ["truncate", None]
    assert target.read_bytes() == emulator_conn.video_content()
    assert manifest["bytes"] == len(emulator_conn.video_content())
    assert leftovers(tmp_path) == ["v.mp4"]


@pytest.mark.parametrize("name", ["v" * 251 + ".mp4", "\u00e9" * 125 + ".mp4"])
def test_a_long_file_name_is_saved(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, name: str) -> None:
    # The longest names a filesystem takes (255 bytes): the temporary file beside it must fit too.
    assert len(name.encode()) in (254, 255)
    generation_id = finished(emulator_conn)
    target = tmp_path / name
    manifest = download(generation_id, target).execute(context)
    assert target.read_bytes() == emulator_conn.video_content()
    assert manifest["uri"] == f"file://{target}"
    assert leftovers(tmp_path) == [name]


def test_download_that_keeps_failing_leaves_no_file(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=2))
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(Fault(kind="truncate", endpoint="download", times=10))
    with pytest.raises(VidgenTransientError, match="gave up after 3 attempts"):
        download(generation_id, tmp_path / "v.mp4").execute(context)
    assert leftovers(tmp_path) == []


def _serve_without_length(body: bytes, headers: bytes = b"") -> Any:
    """A loopback host answering every GET with ``body`` as video/mp4, with no Content-Length (then it closes).

    ``headers`` are added as they are (each ending with CRLF), whatever the request asked for.
    """
    import socketserver
    import threading

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n" + headers + b"\r\n" + body
            )

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("cut", [False, True])
def test_a_body_without_length_is_saved_only_if_the_mp4_is_whole(tmp_path: Path, cut: bool) -> None:
    from importlib import resources

    video = resources.files("airflow_provider_vidgen.testing").joinpath("sample.mp4").read_bytes()
    server = _serve_without_length(video[: len(video) // 2] if cut else video)
    settings = ConnectionSettings(
        conn_id="c", base_url="https://api", api_key="k", max_retries=1, retry_base_delay=0.01, retry_max_delay=0.02
    )

    class Log:
        def info(self, *a: Any) -> None: ...
        def warning(self, *a: Any) -> None: ...

    result = GenerationResult(
        id="g", status="completed", video_url=f"http://127.0.0.1:{server.server_address[1]}/v.mp4"
    )
    target = as_storage_path(tmp_path / "a.mp4")
    try:
        if cut:  # the connection closed early: it looks like the end of the body, but ends inside a box
            with pytest.raises(VidgenTransientError, match="the body ends inside an MP4 box"):
                VideoSaver(settings, Log()).save("g", lambda _: result, target)
            assert leftovers(tmp_path) == []
        else:
            manifest = VideoSaver(settings, Log()).save("g", lambda _: result, target)
            assert manifest["bytes"] == len(video)
            assert (tmp_path / "a.mp4").read_bytes() == video
    finally:
        server.shutdown()
        server.server_close()


def test_a_compressed_answer_despite_identity_is_checked_on_the_wire_and_saved_decoded(tmp_path: Path) -> None:
    import gzip
    from importlib import resources

    video = resources.files("airflow_provider_vidgen.testing").joinpath("sample.mp4").read_bytes()
    packed = gzip.compress(video)
    headers = b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(packed)
    server = _serve_without_length(packed, headers)  # the host ignores Accept-Encoding: identity
    settings = ConnectionSettings(
        conn_id="c", base_url="https://api", api_key="k", max_retries=1, retry_base_delay=0.01, retry_max_delay=0.02
    )

    class Log:
        def info(self, *a: Any) -> None: ...
        def warning(self, *a: Any) -> None: ...

    result = GenerationResult(
        id="g", status="completed", video_url=f"http://127.0.0.1:{server.server_address[1]}/v.mp4"
    )
    try:
        manifest = VideoSaver(settings, Log()).save("g", lambda _: result, as_storage_path(tmp_path / "a.mp4"))
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "a.mp4").read_bytes() == video  # the video, not its compressed form
    assert manifest["bytes"] == len(video)
    assert manifest["sha256"] == hashlib.sha256(video).hexdigest()


@pytest.mark.parametrize("step", [1, 3, 8, 17, 1 << 20])
def test_mp4_boxes_are_followed_across_chunks(step: int) -> None:
    from importlib import resources

    from airflow_provider_vidgen.saving import _IsoBoxes

    def whole(data: bytes) -> bool:
        boxes = _IsoBoxes()
        for start in range(0, len(data), step):
            boxes.feed(data[start : start + step])
        return boxes.complete()

    video = resources.files("airflow_provider_vidgen.testing").joinpath("sample.mp4").read_bytes()
    assert whole(video)
    assert not whole(video[: len(video) // 2])
    assert not whole(video[:-1])
    assert not whole(video + b"x")
    large = (
        (16).to_bytes(4, "big") + b"ftypisom" + bytes(4) + (1).to_bytes(4, "big") + b"mdat" + (21).to_bytes(8, "big")
    )
    assert whole(large + b"abcde")  # a 64-bit box size
    assert not whole(large + b"abcd")
    to_the_end = (16).to_bytes(4, "big") + b"ftypisom" + bytes(4) + bytes(4) + b"mdat"
    assert whole(to_the_end + b"x" * 50)  # size 0: the last box runs to the end of the file


def test_existing_destination_is_overwritten_by_default(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"old")
    download(finished(emulator_conn), target).execute(context)
    assert target.read_bytes() == emulator_conn.video_content()


def test_if_exists_skip_downloads_nothing(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"kept")
    manifest = download("proj_x", target, if_exists="skip").execute(context)
    assert target.read_bytes() == b"kept"
    assert emulator_conn.requests == []
    assert manifest["sha256"] == hashlib.sha256(b"kept").hexdigest()
    assert manifest["bytes"] == 4
    assert manifest["skipped"] is True


def test_if_exists_fail(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"kept")
    with pytest.raises(VidgenOutputExistsError) as info:
        download("proj_x", target, if_exists="fail").execute(context)
    assert isinstance(info.value, AirflowFailException)
    assert emulator_conn.requests == []


def test_bad_if_exists_is_rejected_at_import() -> None:
    with pytest.raises(VidgenError, match="if_exists"):
        download("proj_x", "/tmp/x.mp4", if_exists="append")
    with pytest.raises(VidgenError, match="if_output_exists"):
        StarVideosCreateOperator(task_id="t", prompt="p", output_path="/tmp/x.mp4", if_output_exists="never")


def test_not_completed_or_failed_generations(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    pending = finished(emulator_conn, queued_for=3600)
    with pytest.raises(VidgenError, match=r"not completed \(status: queued\)"):
        download(pending, tmp_path / "a.mp4").execute(context)
    failed = finished(emulator_conn, outcome="failed", error="nsfw")
    with pytest.raises(VidgenGenerationFailedError, match="nsfw"):
        download(failed, tmp_path / "b.mp4").execute(context)
    assert leftovers(tmp_path) == []
    assert emulator_conn.requests_to("download") == []


@pytest.mark.parametrize("video_url", [None, "", "  "])
def test_completed_without_a_video_url_says_so(tmp_path: Path, video_url: str | None) -> None:
    settings = ConnectionSettings(conn_id="c", base_url="https://api", api_key="k")

    class Log:
        def info(self, *a: Any) -> None: ...
        def warning(self, *a: Any) -> None: ...

    result = GenerationResult(id="g", status="completed", video_url=video_url)
    with pytest.raises(VidgenError) as info:
        VideoSaver(settings, Log()).save("g", lambda _: result, as_storage_path(tmp_path / "a.mp4"))
    message = str(info.value)
    assert "is completed, but the API's answer has no video_url" in message
    assert "not completed" not in message
    assert "Wait for it first" not in message  # waiting would not help
    assert leftovers(tmp_path) == []


def test_only_http_video_urls_are_fetched(tmp_path: Path) -> None:
    settings = ConnectionSettings(conn_id="c", base_url="https://api", api_key="k")

    class Log:
        def info(self, *a: Any) -> None: ...
        def warning(self, *a: Any) -> None: ...

    result = GenerationResult(id="g", status="completed", video_url="file:///etc/passwd")
    with pytest.raises(VidgenError, match="not an http"):
        VideoSaver(settings, Log()).save("g", lambda _: result, as_storage_path(tmp_path / "a.mp4"))
    assert leftovers(tmp_path) == []


def test_plain_path_means_file_uri(tmp_path: Path) -> None:
    assert str(as_storage_path(str(tmp_path / "x.mp4"))) == f"file://{tmp_path}/x.mp4"
    assert str(as_storage_path(f"file://{tmp_path}/y.mp4")) == f"file://{tmp_path}/y.mp4"


# -- output_path on the create operators --------------------------------------------------------------


def star(target: Path, **kwargs: Any) -> StarVideosCreateOperator:
    return StarVideosCreateOperator(task_id="task", prompt="p", poll_interval=0.05, output_path=str(target), **kwargs)


def test_output_path_waits_and_saves(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1))
    target = tmp_path / "2026-03-04" / "star.mp4"
    generation_id = star(target).execute(context)  # wait_for_completion not set: output_path implies it
    xcom = context["ti"].xcom
    assert xcom["generation_id"] == generation_id
    assert xcom["output"]["uri"] == f"file://{target}"
    assert xcom["output"]["generation_id"] == generation_id
    assert target.read_bytes() == emulator_conn.video_content()


def test_output_exists_skip_creates_nothing(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "star.mp4"
    target.write_bytes(b"already here")
    assert star(target).execute(context) is None
    assert emulator_conn.requests == []  # nothing created, nothing billed
    assert context["ti"].xcom["output"]["sha256"] == hashlib.sha256(b"already here").hexdigest()


def test_output_exists_overwrite(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    target = tmp_path / "star.mp4"
    target.write_bytes(b"old")
    star(target, if_output_exists="overwrite").execute(context)
    assert len(emulator_conn.creates()) == 1
    assert target.read_bytes() == emulator_conn.video_content()


def test_output_exists_fail(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "star.mp4"
    target.write_bytes(b"old")
    with pytest.raises(VidgenOutputExistsError):
        star(target, if_output_exists="fail").execute(context)
    assert emulator_conn.requests == []


def test_deferred_output_is_saved_on_resume(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0.1, processing_for=0.1))
    target = tmp_path / "star.mp4"
    op = star(target, deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    assert not target.exists()  # nothing saved before the wait

    async def run() -> Any:
        (event,) = [event.payload async for event in info.value.trigger.run()]
        return event

    event = asyncio.run(asyncio.wait_for(run(), 30))
    downloads_before = len(emulator_conn.requests_to("download"))
    assert downloads_before == 0  # the trigger never downloads
    op.execute_complete(context, event)
    assert target.read_bytes() == emulator_conn.video_content()
    assert context["ti"].xcom["output"]["uri"] == f"file://{target}"


def test_asset_events_carry_the_manifest(emulator_conn: Emulator, tmp_path: Path) -> None:
    from airflow.providers.common.compat.sdk import Asset

    from tests.conftest import FakeTI

    class Event:
        def __init__(self) -> None:
            self.extra: dict[str, Any] = {}

    asset = Asset("vidgen_test_videos")
    events = {asset: Event()}
    context = {"ti": FakeTI(), "outlet_events": events}
    manifest = download(finished(emulator_conn), tmp_path / "a.mp4", outlets=[asset]).execute(context)
    assert events[asset].extra == manifest


def test_compressed_answers_are_not_requested(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    # A host that gzips when asked: the saver asks for the bytes as stored (Accept-Encoding: identity).
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(Fault(kind="gzip", endpoint="download"))
    download(generation_id, tmp_path / "a.mp4").execute(context)
    assert (tmp_path / "a.mp4").read_bytes() == emulator_conn.video_content()
    assert emulator_conn.requests_to("download")[0].fault is None  # it was not compressed


def test_download_429_honours_retry_after(emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path) -> None:
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(Fault(kind="status", status=429, retry_after="1", endpoint="download"))
    download(generation_id, tmp_path / "a.mp4").execute(context)
    limited, ok = emulator_conn.requests_to("download")
    assert ok.time - limited.time >= 0.95  # retry_base_delay is 0.01 s


def test_skipped_saves_put_the_existing_manifest_on_the_asset_events(emulator_conn: Emulator, tmp_path: Path) -> None:
    from airflow.providers.common.compat.sdk import Asset

    from tests.conftest import FakeTI

    class Event:
        def __init__(self) -> None:
            self.extra: dict[str, Any] = {}

    asset = Asset("vidgen_test_videos")
    target = tmp_path / "a.mp4"
    target.write_bytes(b"kept")
    for task in (
        download("proj_x", target, if_exists="skip", outlets=[asset]),
        star(target, outlets=[asset]),
    ):
        events = {asset: Event()}
        task.execute({"ti": FakeTI(), "outlet_events": events})
        assert events[asset].extra["uri"] == f"file://{target}"
        assert events[asset].extra["skipped"] is True
    assert emulator_conn.requests == []


# -- only a video is saved (a 200 page, an empty body or a wrong type never is) -----------------------

HTML = "<!doctype html><html><head><title>Link expired</title></head><body>Sorry, this link has expired.</body></html>"


def content(times: int = 1, text: str | None = None, content_type: str = "application/octet-stream") -> Fault:
    return Fault(kind="content", endpoint="download", times=times, text=text, content_type=content_type)


def test_html_page_is_handled_as_an_expired_url_and_the_fresh_url_is_saved(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(content(text=HTML, content_type="text/html; charset=utf-8"))
    target = tmp_path / "a.mp4"
    manifest = download(generation_id, target).execute(context)
    assert [r.fault for r in emulator_conn.requests_to("download")] == ["content", None]
    assert len(emulator_conn.requests_to("result")) == 2  # asked the API for a fresh URL
    assert target.read_bytes() == emulator_conn.video_content()
    assert manifest["content_type"] == "video/mp4"
    assert leftovers(tmp_path) == ["a.mp4"]


def test_html_page_again_for_the_fresh_url_fails_clearly_and_saves_nothing(
    emulator_conn: Emulator, tmp_path: Path
) -> None:
    from airflow.providers.common.compat.sdk import Asset

    from airflow_provider_vidgen.saving import VidgenNotAVideoError
    from tests.conftest import FakeTI

    class Event:
        def __init__(self) -> None:
            self.extra: dict[str, Any] = {}

    asset = Asset("vidgen_test_videos")
    events = {asset: Event()}
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(content(times=5, text=HTML, content_type="text/html; charset=utf-8"))
    with pytest.raises(VidgenNotAVideoError) as info:
        download(generation_id, tmp_path / "a.mp4", outlets=[asset]).execute({"ti": FakeTI(), "outlet_events": events})
    message = str(info.value)
    assert "Content-Type is 'text/html; charset=utf-8', not a video" in message
    assert "'<!doctype html><html><head><title>Link expired</title></head>" in message  # the first bytes, quoted
    assert "fresh URL" in message
    assert "nothing was saved" in message
    assert not isinstance(info.value, VidgenTransientError)  # not retried in the task: it was tried twice
    assert len(emulator_conn.requests_to("download")) == 2
    assert len(emulator_conn.requests_to("result")) == 2
    assert leftovers(tmp_path) == []
    assert events[asset].extra == {}  # no manifest for an asset event


def test_output_path_never_saves_a_page_as_the_video(emulator_conn: Emulator, tmp_path: Path) -> None:
    from airflow_provider_vidgen.saving import VidgenNotAVideoError
    from tests.conftest import FakeTI

    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    emulator_conn.add_fault(content(times=2, text=HTML, content_type="text/html"))
    ti = FakeTI()
    with pytest.raises(VidgenNotAVideoError):
        star(tmp_path / "star.mp4").execute({"ti": ti})
    assert "output" not in ti.xcom
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "content_type", "reason"),
    [
        ("", "video/mp4", "the body is empty (Content-Type video/mp4)"),
        ("", "application/octet-stream", "the body is empty"),
        (HTML, "video/mp4", "Content-Type is video/mp4 and the body is a text document"),
        ('{"error": "expired"}', "application/json", "Content-Type is 'application/json', not a video"),
        ("plain words", "text/plain", "Content-Type is 'text/plain', not a video"),
        (HTML, "application/octet-stream", "application/octet-stream and the body does not start like a video"),
        ("PK\x03\x04 a zip file", "binary/octet-stream", "binary/octet-stream and the body does not start like"),
    ],
)
def test_wrong_answers_are_never_saved(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, text: str, content_type: str, reason: str
) -> None:
    from airflow_provider_vidgen.saving import VidgenNotAVideoError

    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(content(times=2, text=text, content_type=content_type))
    with pytest.raises(VidgenNotAVideoError, match="HTTP 200 but") as info:
        download(generation_id, tmp_path / "a.mp4").execute(context)
    assert reason in str(info.value)
    assert leftovers(tmp_path) == []


def test_generic_type_is_saved_when_the_body_is_a_video(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(content())  # the real MP4, as application/octet-stream
    manifest = download(generation_id, tmp_path / "a.mp4").execute(context)
    assert manifest["content_type"] == "application/octet-stream"
    assert (tmp_path / "a.mp4").read_bytes() == emulator_conn.video_content()
    assert len(emulator_conn.requests_to("download")) == 1


@pytest.mark.parametrize("content_type", ["application/mp4", "application/x-download", "application/force-download"])
def test_a_video_under_another_type_is_saved(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, content_type: str
) -> None:
    # The bytes are a video (an MP4 ``ftyp`` box first), whatever the host calls them.
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(content(times=2, content_type=content_type))
    manifest = download(generation_id, tmp_path / "a.mp4").execute(context)
    assert manifest["content_type"] == content_type
    assert (tmp_path / "a.mp4").read_bytes() == emulator_conn.video_content()
    assert len(emulator_conn.requests_to("download")) == 1


@pytest.mark.parametrize(
    ("text", "content_type"),
    [
        ("Access Denied", "video/mp4"),
        ("This link has expired.\n", "video/mp4; charset=utf-8"),
        ("Lien expir\u00e9", "video/webm"),
        ("Access Denied", "application/mp4"),
    ],
)
def test_a_text_message_sent_as_a_video_is_never_saved(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, text: str, content_type: str
) -> None:
    from airflow_provider_vidgen.saving import VidgenNotAVideoError

    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(content(times=2, text=text, content_type=content_type))
    with pytest.raises(VidgenNotAVideoError, match="the body is a text document") as info:
        download(generation_id, tmp_path / "a.mp4").execute(context)
    assert repr(" ".join(text.split())) in str(info.value)  # the words are quoted
    assert leftovers(tmp_path) == []


def test_quoted_bytes_are_bounded_and_secret_free(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    from airflow_provider_vidgen.saving import QUOTE_BYTES, VidgenNotAVideoError

    generation_id = finished(emulator_conn)
    echo = (
        f"<p>key {emulator_conn.api_key}: https://cdn.example/v.mp4?expires=1&signature=SIGNED-PART\x00\x07 gone</p>"
        + "x" * 5000
    )
    emulator_conn.add_fault(content(times=2, text=echo, content_type="text/html"))
    with pytest.raises(VidgenNotAVideoError) as info:
        download(generation_id, tmp_path / "a.mp4").execute(context)
    message = str(info.value)
    assert "SIGNED-PART" not in message
    assert "expires=" not in message
    assert emulator_conn.api_key not in message
    assert "https://cdn.example/v.mp4?..." in message
    assert "\x00" not in message
    assert "\x07" not in message
    assert "x" * (QUOTE_BYTES + 1) not in message
    assert len(message) < 1000


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"\x00\x00\x00\x18ftypmp42", "ISO-BMFF"),
        (b"\x00\x00\x00\x08moov", "ISO-BMFF"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "Matroska/WebM"),
        (b"OggS\x00\x02", "Ogg"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "AVI"),
        (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9", "ASF"),
        (b"FLV\x01\x05", "FLV"),
        (b"\x47" + b"\x00" * 187 + b"\x47", "MPEG-TS"),
        (b"\x00\x00\x01\xba\x44", "MPEG-PS"),
        (b"<!doctype html>", None),
        (b"\x47 only one sync byte", None),
        (b"", None),
    ],
)
def test_video_containers_recognised(head: bytes, container: str | None) -> None:
    from airflow_provider_vidgen.saving import video_container

    assert video_container(head) == container


# -- a destination that is a folder -------------------------------------------------------------------


@pytest.mark.parametrize("if_exists", ["overwrite", "skip", "fail"])
def test_existing_folder_destination_fails_before_anything_is_read(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, if_exists: str
) -> None:
    from airflow_provider_vidgen.saving import VidgenDestinationError

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "other.mp4").write_bytes(b"other")
    for destination in (str(folder), f"file://{folder}", folder):
        with pytest.raises(VidgenDestinationError, match="is a folder") as info:
            download("proj_x", destination, if_exists=if_exists).execute(context)
        assert isinstance(info.value, AirflowFailException)  # no retries
    assert emulator_conn.requests == []
    assert leftovers(folder) == ["other.mp4"]


def test_destination_ending_with_a_slash_fails_before_anything_is_read(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    from airflow_provider_vidgen.saving import VidgenDestinationError

    for destination in (f"{tmp_path}/new/", f"file://{tmp_path}/new/", f"{tmp_path}/"):
        with pytest.raises(VidgenDestinationError, match="is a folder"):
            download("proj_x", destination).execute(context)
    assert emulator_conn.requests == []
    assert leftovers(tmp_path) == []  # not even the folder was created


@pytest.mark.parametrize("if_output_exists", ["overwrite", "skip", "fail"])
def test_output_path_folder_creates_nothing(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, if_output_exists: str
) -> None:
    from airflow_provider_vidgen.saving import VidgenDestinationError

    folder = tmp_path / "videos"
    folder.mkdir()
    for output_path in (str(folder), f"{folder}/", f"{tmp_path}/not-yet/"):
        op = StarVideosCreateOperator(
            task_id="t", prompt="p", poll_interval=0.05, output_path=output_path, if_output_exists=if_output_exists
        )
        with pytest.raises(VidgenDestinationError, match="is a folder") as info:
            op.execute(context)
        assert isinstance(info.value, AirflowFailException)  # no retries
    assert emulator_conn.creates() == []  # nothing created, nothing billed
    assert emulator_conn.requests == []
    assert leftovers(folder) == []
    assert leftovers(tmp_path) == ["videos"]


def test_folder_that_appears_during_the_download_is_not_filled(emulator_conn: Emulator, tmp_path: Path) -> None:
    from airflow_provider_vidgen.saving import VidgenDestinationError

    generation_id = finished(emulator_conn)
    target = tmp_path / "a.mp4"
    hook = VidgenHook()

    def result_then_a_folder_appears(gid: str) -> GenerationResult:
        result = hook.get_result(gid)
        target.mkdir()  # after the destination was checked, before the video is moved into place
        return result

    class Log:
        def info(self, *a: Any) -> None: ...
        def warning(self, *a: Any) -> None: ...

    with pytest.raises(VidgenDestinationError, match="is a folder"):
        VideoSaver(hook.settings, Log()).save(generation_id, result_then_a_folder_appears, as_storage_path(target))
    assert len(emulator_conn.requests_to("download")) == 1  # downloaded, then refused to move it into the folder
    assert leftovers(target) == []
    assert leftovers(tmp_path) == ["a.mp4"]  # the folder only: no temporary file left behind


class _QuietLog:
    def info(self, *a: Any) -> None: ...
    def warning(self, *a: Any) -> None: ...


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize("if_exists", ["fail", "skip", "overwrite"])
def test_an_object_that_appears_during_the_download_is_replaced_only_with_overwrite(
    emulator_conn: Emulator, tmp_path: Path, if_exists: str, remote: bool
) -> None:
    import uuid

    from airflow_provider_vidgen.saving import VidgenOutputExistsError

    generation_id = finished(emulator_conn)
    bucket = f"memory://bucket-{uuid.uuid4().hex}"
    target = _memory_path(f"{bucket}/a.mp4") if remote else as_storage_path(tmp_path / "a.mp4")
    hook = VidgenHook()

    def result_then_another_writer(gid: str) -> GenerationResult:
        result = hook.get_result(gid)
        target.write_bytes(b"written by another run")  # after the destination was checked
        return result

    saver = VideoSaver(hook.settings, _QuietLog())
    if if_exists == "fail":
        with pytest.raises(VidgenOutputExistsError, match="appeared while the video") as info:
            saver.save(generation_id, result_then_another_writer, target, if_exists)
        assert isinstance(info.value, AirflowFailException)  # no retries
        assert target.read_bytes() == b"written by another run"
    elif if_exists == "skip":
        manifest = saver.save(generation_id, result_then_another_writer, target, if_exists)
        assert target.read_bytes() == b"written by another run"
        assert manifest["skipped"] is True
        assert manifest["bytes"] == len(b"written by another run")
        assert manifest["sha256"] == hashlib.sha256(b"written by another run").hexdigest()
    else:
        manifest = saver.save(generation_id, result_then_another_writer, target, if_exists)
        assert target.read_bytes() == emulator_conn.video_content()
        assert "skipped" not in manifest
    assert len(emulator_conn.requests_to("download")) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.mp4"]  # no temporary file left behind


def test_download_operator_passes_if_exists_to_the_move(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_vidgen.saving import VidgenOutputExistsError

    generation_id = finished(emulator_conn)
    target = tmp_path / "a.mp4"
    get_result = VidgenHook.get_result

    def result_then_another_writer(self: VidgenHook, gid: str, **kwargs: Any) -> GenerationResult:
        result = get_result(self, gid, **kwargs)
        target.write_bytes(b"other")
        return result

    monkeypatch.setattr(VidgenHook, "get_result", result_then_another_writer)
    with pytest.raises(VidgenOutputExistsError):
        download(generation_id, target, if_exists="fail").execute(context)
    assert target.read_bytes() == b"other"
    assert leftovers(tmp_path) == ["a.mp4"]


def test_output_path_that_appears_while_waiting_is_kept_with_fail(
    emulator_conn: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_vidgen.saving import VidgenOutputExistsError
    from tests.conftest import FakeTI

    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0))
    target = tmp_path / "star.mp4"
    get_result = VidgenHook.get_result

    def result_then_another_writer(self: VidgenHook, gid: str, **kwargs: Any) -> GenerationResult:
        result = get_result(self, gid, **kwargs)
        target.write_bytes(b"other")  # absent when the task started, there before the video is moved
        return result

    monkeypatch.setattr(VidgenHook, "get_result", result_then_another_writer)
    ti = FakeTI()
    with pytest.raises(VidgenOutputExistsError, match="appeared while the video"):
        star(target, if_output_exists="fail").execute({"ti": ti})
    assert target.read_bytes() == b"other"
    assert "output" not in ti.xcom
    assert ti.xcom["generation_id"]  # the paid generation is still named
    assert leftovers(tmp_path) == ["star.mp4"]


def _memory_path(uri: str) -> Any:
    """An ObjectStoragePath on fsspec's in-memory filesystem (an object store without real folders)."""
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        from airflow.sdk.io import attach
    except ImportError:  # Airflow 2
        from airflow.io.store import attach  # type: ignore[no-redef]
    attach("memory", fs=MemoryFileSystem())
    return as_storage_path(uri)


def test_object_store_destination_is_written_at_its_own_key(emulator_conn: Emulator, tmp_path: Path) -> None:
    import uuid

    from airflow_provider_vidgen.saving import VidgenDestinationError

    bucket = f"memory://bucket-{uuid.uuid4().hex}"
    hook = VidgenHook()

    class Log:
        def info(self, *a: Any) -> None: ...
        def warning(self, *a: Any) -> None: ...

    target = _memory_path(f"{bucket}/day/a.mp4")
    manifest = VideoSaver(hook.settings, Log()).save(finished(emulator_conn), hook.get_result, target)
    assert target.read_bytes() == emulator_conn.video_content()
    assert manifest["uri"] == str(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.mp4"]

    second = _memory_path(f"{bucket}/day/b.mp4")

    def result_then_a_prefix_appears(gid: str) -> GenerationResult:
        result = hook.get_result(gid)
        (second / "inside.mp4").write_bytes(b"other")  # b.mp4 is now a "folder" (a prefix)
        return result

    with pytest.raises(VidgenDestinationError, match="is a folder"):
        VideoSaver(hook.settings, Log()).save(finished(emulator_conn), result_then_a_prefix_appears, second)
    assert sorted(p.name for p in second.iterdir()) == ["inside.mp4"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.mp4", "b.mp4"]  # no temporary object left


def test_without_retries_a_page_fails_at_once_as_not_a_video(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_vidgen.saving import VidgenNotAVideoError

    monkeypatch.setenv("AIRFLOW_CONN_VIDGEN_DEFAULT", conn_json(emulator_conn, max_retries=0))
    generation_id = finished(emulator_conn)
    emulator_conn.add_fault(content(text=HTML, content_type="text/html"))
    with pytest.raises(VidgenNotAVideoError, match="not a video") as info:
        download(generation_id, tmp_path / "a.mp4").execute(context)
    assert "fresh URL" not in str(info.value)
    assert str(info.value).endswith("Nothing was saved")
    assert len(emulator_conn.requests_to("download")) == 1
    assert leftovers(tmp_path) == []
