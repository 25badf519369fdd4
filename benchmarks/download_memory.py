"""Download memory benchmark (a script, not a test): peak RSS growth while saving a large video.

The emulator (a separate process) serves a video of ``--mb`` megabytes; ``VideoSaver`` - what
``VideoDownloadOperator`` and ``output_path`` use - streams it to a local file. Reported: bytes, time,
throughput and the peak RSS growth of the downloading process over its size before the download.

Usage: scripts/benchmark.sh (runs it after the trigger benchmark), or
    .venv/airflow-3.3.2/bin/python benchmarks/download_memory.py [--mb 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from trigger_capacity import proc_status_mb, rss_mb  # the sibling script (benchmarks/ is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="video size in MB (10^6 bytes)")
    args = parser.parse_args()
    size = args.mb * 1_000_000
    workdir = Path(tempfile.mkdtemp(prefix="vidgen-download-bench-"))
    url_file = workdir / "url"
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_vidgen.testing",
            "--url-file",
            str(url_file),
            "--queued-for",
            "0",
            "--processing-for",
            "0",
            "--video-bytes",
            str(size),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (url_file.exists() and url_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start")
            time.sleep(0.05)
        base_url = url_file.read_text().strip()
        os.environ["AIRFLOW_CONN_VIDGEN_DEFAULT"] = json.dumps(
            {"conn_type": "vidgen", "host": base_url, "password": "test-key"}
        )
        from airflow_provider_vidgen.hooks.vidgen import VidgenHook
        from airflow_provider_vidgen.models import VideosRequest
        from airflow_provider_vidgen.saving import VideoSaver, as_storage_path

        hook = VidgenHook()
        generation_id = hook.create(VideosRequest.build(model="videos", prompt="big", duration=15))
        hook.get_result(generation_id)  # warm up everything the download path imports

        class Log:
            def info(self, msg: str, *a: object) -> None: ...

            def warning(self, msg: str, *a: object) -> None:
                print("warning:", msg % a)

        target = as_storage_path(workdir / "big.mp4")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM, the kernel's peak-RSS mark, to the current RSS
        baseline = rss_mb()
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mb())
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        manifest = VideoSaver(hook.settings, Log()).save(generation_id, hook.get_result, target)
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        peak = max(peak, rss_mb(), proc_status_mb("VmHWM"))  # the kernel's peak since the reset
        digest = hashlib.sha256()
        with open(workdir / "big.mp4", "rb") as saved:
            while chunk := saved.read(1 << 20):
                digest.update(chunk)
        from airflow_provider_vidgen.testing.emulator import Emulator

        served = hashlib.sha256(Emulator(video_bytes=size).video_content()).hexdigest()  # what the host sent
        if manifest["bytes"] != size or not manifest["sha256"] == digest.hexdigest() == served:
            raise SystemExit(f"saved file does not match what was served: {manifest}")
        print(f"video: {size / 1e6:.0f} MB ({manifest['bytes']} bytes), sha256 of the file = served bytes")
        print(f"download: {elapsed:.2f} s, {size / 1e6 / elapsed:.0f} MB/s")
        print(
            f"RSS before: {baseline:.1f} MB, peak during: {peak:.1f} MB, "
            f"growth: {peak - baseline:.1f} MB (target < 64 MB)"
        )
    finally:
        emulator.terminate()
        emulator.wait(30)
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
