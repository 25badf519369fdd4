"""Trigger capacity benchmark (a script, not a test): how much a wait costs the triggerer.

For each N, in a fresh process with one event loop (as a triggerer runs them), N triggers wait on
N generations of the emulator, which runs in a separate process; every generation completes
``--complete-after`` seconds after its creation and the poll interval is ``--poll`` seconds. The
same is done with the HTTP provider's ``HttpSensorTrigger`` polling the same result URLs (the
emulator answers it 404 until the generation is done, the semantics that trigger expects).

Reported per run: CPU seconds per 1,000 polls (trigger process), peak RSS growth, the largest lag
between a generation completing and its event, and the TCP connections the emulator saw opened.
Then the import cost of the operator and sensor modules (what every DAG parse pays), and a
client comparison (one shared aiohttp session vs one shared httpx client) that chose aiohttp.

Usage: scripts/benchmark.sh  (or: python benchmarks/trigger_capacity.py --n 1000 5000)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

API_KEY = "test-key"
BASE_PATH = "/kyyReactApiServer"


# -- helpers shared by the parent and the workers ------------------------------------------------


def proc_status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (``VmRSS``, ``VmHWM``...), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return proc_status_mb("VmRSS")


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def admin(base_url: str, path: str, payload: Any = None) -> Any:
    import requests

    origin = base_url.removesuffix(BASE_PATH)
    if payload is None:
        response = requests.get(origin + path, timeout=120)
    else:
        response = requests.post(origin + path, json=payload, timeout=120)
    response.raise_for_status()
    return response.json()


# -- worker: N triggers on one loop ----------------------------------------------------------------


async def create_generations(base_url: str, n: int) -> list[str]:
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "videos", "prompt": "benchmark", "duration": 5}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

        async def one() -> str:
            async with session.post(base_url + "/v1/videos/videos", json=body, headers=headers) as response:
                return (await response.json())["data"]["projectId"]

        return list(await asyncio.gather(*(one() for _ in range(n))))


def make_triggers(kind: str, ids: list[str], poll: float, base_url: str) -> list[Any]:
    if kind == "vidgen":
        from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger

        os.environ["AIRFLOW_CONN_VIDGEN_BENCH"] = json.dumps(
            {"conn_type": "vidgen", "host": base_url, "password": API_KEY}
        )
        start = time.time()
        # As the operators create it: with the status they saw in their check before deferring.
        return [
            VideoGenerationTrigger(
                "vidgen_bench", generation_id=i, poll_interval=poll, started_at=start, timeout=600, last_status="queued"
            )
            for i in ids
        ]
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    from airflow_provider_vidgen.testing.emulator import NOT_FOUND_UNTIL_DONE_HEADER

    os.environ["AIRFLOW_CONN_HTTP_BENCH"] = base_url.removesuffix(BASE_PATH)
    headers = {"Authorization": f"Bearer {API_KEY}", NOT_FOUND_UNTIL_DONE_HEADER: "1"}
    return [
        HttpSensorTrigger(
            endpoint=f"{BASE_PATH}/v1/result/{i}", http_conn_id="http_bench", headers=headers, poke_interval=poll
        )
        for i in ids
    ]


async def run_worker(kind: str, n: int, poll: float, base_url: str, bound: float) -> dict[str, Any]:
    ids = await create_generations(base_url, n)
    triggers = make_triggers(kind, ids, poll, base_url)
    import gc

    gc.collect()
    rss_start = rss_mb()
    peak = rss_start
    cpu_start = cpu_seconds()
    event_times: dict[str, float] = {}

    async def run_one(generation_id: str, trigger: Any) -> None:
        async for _event in trigger.run():
            event_times[generation_id] = time.time()
            break

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.25)

    sampler = asyncio.ensure_future(sample())
    started = time.time()
    await asyncio.wait_for(asyncio.gather(*(run_one(i, t) for i, t in zip(ids, triggers, strict=True))), bound)
    wall = time.time() - started
    cpu = cpu_seconds() - cpu_start
    peak = max(peak, rss_mb())
    sampler.cancel()
    return {
        "ids": ids,
        "event_times": event_times,
        "cpu": cpu,
        "wall": wall,
        "rss_growth": peak - rss_start,
        "rss_peak": peak,
    }


def worker_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    result = asyncio.run(run_worker(args.worker, args.n, args.poll, args.base_url, args.bound))
    print(json.dumps(result))


# -- client comparison -----------------------------------------------------------------------------


async def client_phase(client: str, url: str, pollers: int, rounds: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    cpu_start, start = cpu_seconds(), time.time()
    if client == "aiohttp":
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

            async def poll_aiohttp() -> None:
                for _ in range(rounds):
                    async with session.get(url, headers=headers) as response:
                        await response.read()

            await asyncio.gather(*(poll_aiohttp() for _ in range(pollers)))
    else:
        import httpx

        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:

            async def poll_httpx() -> None:
                for _ in range(rounds):
                    (await http.get(url, headers=headers)).read()

            await asyncio.gather(*(poll_httpx() for _ in range(pollers)))
    requests_done = pollers * rounds
    return {"cpu_per_1000": (cpu_seconds() - cpu_start) / requests_done * 1000, "wall": time.time() - start}


def client_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    print(json.dumps(asyncio.run(client_phase(args.client, args.url, args.pollers, args.rounds))))


# -- import cost -----------------------------------------------------------------------------------


def import_seconds(modules: list[str], runs: int) -> float:
    code = (
        "import time, airflow.sdk; t = time.perf_counter(); "
        + "; ".join(f"import {m}" for m in modules)
        + "; print(time.perf_counter() - t)"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


# -- parent ----------------------------------------------------------------------------------------


def start_emulator(queued_for: float, processing_for: float, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    url_file = workdir / "url"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_vidgen.testing",
            "--url-file",
            str(url_file),
            "--queued-for",
            str(queued_for),
            "--processing-for",
            str(processing_for),
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not url_file.exists() or not url_file.read_text().strip():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("emulator did not start")
        time.sleep(0.05)
    return process, url_file.read_text().strip()


def run_phase(kind: str, n: int, args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    admin(base_url, "/_emulator/reset", {})
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--n",
            str(n),
            "--poll",
            str(args.poll),
            "--base-url",
            base_url,
            "--bound",
            str(args.complete_after + 120),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW_HOME": args.airflow_home},
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {kind} N={n} failed:\n{out.stderr[-3000:]}")
    worker = json.loads(out.stdout.strip().splitlines()[-1])
    ids = set(worker["ids"])
    log = [r for r in admin(base_url, "/_emulator/requests") if r["endpoint"] == "result" and r["generation_id"] in ids]
    done_at = {g["id"]: g["done_at"] for g in admin(base_url, "/_emulator/generations")}
    lags = [worker["event_times"][i] - done_at[i] for i in ids if i in worker["event_times"]]
    polls = len(log)
    return {
        "trigger": "VideoGenerationTrigger" if kind == "vidgen" else "HttpSensorTrigger",
        "n": n,
        "events": len(worker["event_times"]),
        "polls": polls,
        "cpu_per_1000_polls": worker["cpu"] / polls * 1000 if polls else float("nan"),
        "cpu_total": worker["cpu"],
        "rss_growth_mb": worker["rss_growth"],
        "rss_peak_mb": worker["rss_peak"],
        "max_lag": max(lags) if lags else float("nan"),
        "p50_lag": statistics.median(lags) if lags else float("nan"),
        "connections": len({r["peer"] for r in log}),
        "wall": worker["wall"],
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'trigger':<24}{'N':>6}{'events':>8}{'polls':>8}{'CPU s/1k polls':>16}{'CPU s':>8}"
        f"{'peak RSS MB':>13}{'(+MB)':>8}{'max lag s':>11}{'p50 lag s':>11}{'TCP conns':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['trigger']:<24}{r['n']:>6}{r['events']:>8}{r['polls']:>8}{r['cpu_per_1000_polls']:>16.3f}"
            f"{r['cpu_total']:>8.2f}{r['rss_peak_mb']:>13.1f}{r['rss_growth_mb']:>8.1f}{r['max_lag']:>11.2f}"
            f"{r['p50_lag']:>11.2f}"
            f"{r['connections']:>11}"
        )


def parent_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    import airflow
    import requests

    workdir = Path(tempfile.mkdtemp(prefix="vidgen-bench-"))
    args.airflow_home = str(workdir / "airflow-home")
    half = args.complete_after / 2
    emulator, base_url = start_emulator(half, args.complete_after - half, workdir)
    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; emulator {base_url}")
    print(f"poll interval {args.poll:g} s, every generation completes {args.complete_after:g} s after creation\n")
    rows = []
    try:
        for n in args.n:
            kinds = ["vidgen"] if args.skip_baseline else ["vidgen", "http"]
            for kind in kinds:
                row = run_phase(kind, n, args, base_url)
                rows.append(row)
                print(f"  done: {row['trigger']} N={n} in {row['wall']:.0f}s", flush=True)
        print()
        print_table(rows)
        by = {(r["trigger"], r["n"]): r for r in rows}
        for n in args.n:
            ours, base = by.get(("VideoGenerationTrigger", n)), by.get(("HttpSensorTrigger", n))
            if ours and base:
                ratio = base["cpu_per_1000_polls"] / ours["cpu_per_1000_polls"]
                print(f"N={n}: HttpSensorTrigger spends {ratio:.1f}x the CPU per poll of VideoGenerationTrigger")
        # Client comparison on the same emulator.
        admin(base_url, "/_emulator/reset", {})
        headers = {"Authorization": f"Bearer {API_KEY}"}
        project = requests.post(
            base_url + "/v1/videos/videos",
            json={"model": "videos", "prompt": "p", "duration": 5},
            headers=headers,
            timeout=30,
        ).json()["data"]["projectId"]
        url = f"{base_url}/v1/result/{project}"
        print(f"\nShared async client, {args.pollers} concurrent pollers x {args.rounds} GETs, pool of 100:")
        for client in ("aiohttp", "httpx"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    client,
                    "--url",
                    url,
                    "--pollers",
                    str(args.pollers),
                    "--rounds",
                    str(args.rounds),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"  {client:<8} {figures['cpu_per_1000']:.3f} CPU s per 1,000 requests ({figures['wall']:.1f} s wall)"
            )
    finally:
        emulator.terminate()
        emulator.wait(30)
    ours = import_seconds(
        ["airflow_provider_vidgen.operators.vidgen", "airflow_provider_vidgen.sensors.vidgen"], args.runs
    )
    http = import_seconds(["airflow.providers.http.operators.http", "airflow.providers.http.sensors.http"], args.runs)
    print(f"\nImport on top of airflow.sdk (median of {args.runs} fresh processes):")
    print(f"  airflow_provider_vidgen operators + sensors   {ours * 1000:7.1f} ms")
    print(f"  airflow.providers.http operators + sensors    {http * 1000:7.1f} ms   ({ours / http:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000], help="trigger counts")
    parser.add_argument("--poll", type=float, default=5.0, help="poll interval, seconds")
    parser.add_argument("--complete-after", type=float, default=20.0, help="seconds from creation to completed")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run HttpSensorTrigger")
    parser.add_argument("--runs", type=int, default=9, help="fresh processes for the import measurement")
    parser.add_argument("--pollers", type=int, default=1000, help="client comparison: concurrent pollers")
    parser.add_argument("--rounds", type=int, default=5, help="client comparison: GETs per poller")
    parser.add_argument("--worker", choices=["vidgen", "http"], help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=["aiohttp", "httpx"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--bound", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.n = args.n[0]
        worker_main(args)
    elif args.client:
        client_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
