"""Run the API emulator: ``python -m airflow_provider_vidgen.testing [--port 8808]``.

Prints the base URL (and a matching ``AIRFLOW_CONN_VIDGEN_DEFAULT`` value), then serves until
interrupted. Script it over HTTP: ``POST /_emulator/fault``, ``/timeline``, ``/queue-timeline``,
``/script-prompt``, ``/advance``, ``/reset`` (JSON bodies with the fields of ``Fault`` /
``Timeline``); read the request log with ``GET /_emulator/requests``, the created generations with
``GET /_emulator/generations`` and counts (creates, reads, faults served) with ``GET /_emulator/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import sys
from pathlib import Path

from airflow_provider_vidgen.testing.emulator import DEFAULT_API_KEY, Emulator, Timeline


def _raise_fd_limit() -> None:
    # Thousands of keep-alive connections need thousands of file descriptors.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the emulator and serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_vidgen.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface (loopback only)")
    parser.add_argument("--port", type=int, default=0, help="API port (0 = any free port)")
    parser.add_argument("--download-port", type=int, default=0, help="download host port (0 = any)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the bearer key to accept")
    parser.add_argument("--queued-for", type=float, default=0.5, help="seconds each generation stays queued")
    parser.add_argument("--processing-for", type=float, default=1.0, help="then seconds in processing")
    parser.add_argument("--outcome", default="completed", help="final status (completed or failed)")
    parser.add_argument("--url-file", type=Path, help="also write the base URL to this file once serving")
    parser.add_argument("--video-bytes", type=int, help="size of every served video (default: a small real MP4)")
    parser.add_argument("--url-ttl", type=float, default=3600.0, help="seconds a video_url stays valid")
    args = parser.parse_args(argv)
    _raise_fd_limit()
    emulator = Emulator(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        download_port=args.download_port,
        timeline=Timeline(queued_for=args.queued_for, processing_for=args.processing_for, outcome=args.outcome),
        url_ttl=args.url_ttl,
        video_bytes=args.video_bytes,
    )

    async def serve() -> None:
        await emulator.start_async()
        print(emulator.base_url, flush=True)
        print(f"AIRFLOW_CONN_VIDGEN_DEFAULT='{emulator.airflow_conn_json()}'", file=sys.stderr, flush=True)
        if args.url_file:
            args.url_file.write_text(emulator.base_url + "\n")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await emulator.stop_async()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
