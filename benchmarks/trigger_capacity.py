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


def arrival_offsets(n: int, arrive_over: float) -> list[float]:
    """When each wait starts, seconds after the first: evenly over ``arrive_over`` (0: all at once)."""
    return [arrive_over * i / n for i in range(n)]


async def create_generations(
    base_url: str, n: int, complete_after: float, offsets: list[float]
) -> tuple[list[str], list[float]]:
    """N generations; the i-th completes ``complete_after`` seconds after its creation plus
    ``offsets[i]`` (half queued, half processing); with ``n == 0``, one that is done at once (the
    warm-up). Returns the ids and their creation times (this clock)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "videos", "prompt": "benchmark", "duration": 5}
    half = complete_after / 2
    admin_url = base_url.removesuffix(BASE_PATH) + "/_emulator/queue-timeline"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

        async def queue_timeline(queued_for: float, processing_for: float) -> None:
            timeline = {"queued_for": queued_for, "processing_for": processing_for}
            async with session.post(admin_url, json=timeline) as response:
                response.raise_for_status()

        async def one() -> tuple[str, float]:
            async with session.post(base_url + "/v1/videos/videos", json=body, headers=headers) as response:
                return (await response.json())["data"]["projectId"], time.time()

        # Timelines are consumed in the order of the creates: these creates are sequential.
        if n == 0:
            await queue_timeline(0.0, 0.0)
            return [(await one())[0]], [time.time()]
        created = []
        if any(offsets):
            for offset in offsets:
                await queue_timeline(offset + half, half)
            created += [await one() for _ in offsets]
        else:
            created += await asyncio.gather(*(one() for _ in range(n)))
    return [i for i, _ in created], [at for _, at in created]


def set_connections(base_url: str) -> None:
    os.environ["AIRFLOW_CONN_VIDGEN_BENCH"] = json.dumps({"conn_type": "vidgen", "host": base_url, "password": API_KEY})
    os.environ["AIRFLOW_CONN_HTTP_BENCH"] = base_url.removesuffix(BASE_PATH)


def make_trigger(kind: str, generation_id: str, poll: float) -> Any:
    """One trigger as the triggerer builds it from its kwargs (the wait just handed over)."""
    if kind == "vidgen":
        from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger

        now = time.time()
        # As the operators create it: with the status they saw in their check before deferring.
        return VideoGenerationTrigger(
            "vidgen_bench",
            generation_id=generation_id,
            poll_interval=poll,
            started_at=now,
            timeout=600,
            last_status="queued",
            polls=1,
            deferred_at=now,
        )
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    from airflow_provider_vidgen.testing.emulator import NOT_FOUND_UNTIL_DONE_HEADER

    headers = {"Authorization": f"Bearer {API_KEY}", NOT_FOUND_UNTIL_DONE_HEADER: "1"}
    return HttpSensorTrigger(
        endpoint=f"{BASE_PATH}/v1/result/{generation_id}",
        http_conn_id="http_bench",
        headers=headers,
        poke_interval=poll,
    )


async def run_worker(
    kind: str, n: int, poll: float, base_url: str, bound: float, complete_after: float, arrive_over: float
) -> dict[str, Any]:
    set_connections(base_url)
    # A running triggerer: one wait done first, so imports and first-use setup are not counted.
    warm_up_id = (await create_generations(base_url, 0, 0.0, []))[0][0]
    async for _event in make_trigger(kind, warm_up_id, poll).run():
        break
    offsets = arrival_offsets(n, arrive_over)
    ids, created_at = await create_generations(base_url, n, complete_after, offsets)
    import gc

    gc.collect()
    profile_to = os.environ.get("VIDGEN_BENCH_PROFILE")  # a file for cProfile stats of the measured part
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    rss_start = rss_mb()
    peak = rss_start
    cpu_start = cpu_seconds()
    event_times: dict[str, float] = {}
    start_times: dict[str, float] = {}

    async def run_one(generation_id: str, offset: float, created: float) -> None:
        # A wait's whole life is measured: built from its kwargs, started (connection lookup), its
        # polls, its event. It starts `offset` after its generation was created (or at once).
        if offset:
            await asyncio.sleep(max(0.0, created + offset - time.time()))
        start_times[generation_id] = time.time()
        trigger = make_trigger(kind, generation_id, poll)
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
    await asyncio.wait_for(
        asyncio.gather(*(run_one(*wait) for wait in zip(ids, offsets, created_at, strict=True))), bound + arrive_over
    )
    wall = time.time() - started
    cpu = cpu_seconds() - cpu_start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.{kind}")
    peak = max(peak, rss_mb())
    sampler.cancel()
    return {
        "ids": ids,
        "event_times": event_times,
        "start_times": start_times,
        "cpu": cpu,
        "wall": wall,
        "rss_growth": peak - rss_start,
        "rss_peak": peak,
    }


def worker_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    result = asyncio.run(
        run_worker(args.worker, args.n, args.poll, args.base_url, args.bound, args.complete_after, args.arrive_over)
    )
    Path(args.result_file).write_text(json.dumps(result))


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
    # The worker's output (its triggers' logs) goes to a file, as a triggerer's log does, not to a pipe.
    output = Path(args.airflow_home).parent / f"worker-{kind}-{n}.log"
    result_file = output.with_suffix(".json")
    with output.open("w") as log_file:
        returncode = subprocess.run(
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
                "--complete-after",
                str(args.complete_after),
                "--arrive-over",
                str(args.arrive_over),
                "--result-file",
                str(result_file),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AIRFLOW_HOME": args.airflow_home},
        ).returncode
    if returncode != 0:
        raise RuntimeError(f"worker {kind} N={n} failed:\n{output.read_text()[-3000:]}")
    worker = json.loads(result_file.read_text())
    ids = set(worker["ids"])
    log = [r for r in admin(base_url, "/_emulator/requests") if r["endpoint"] == "result" and r["generation_id"] in ids]
    done_at = {g["id"]: g["done_at"] for g in admin(base_url, "/_emulator/generations")}
    lags = [worker["event_times"][i] - done_at[i] for i in ids if i in worker["event_times"]]
    polls = len(log)
    events = len(worker["event_times"])
    return {
        "trigger": "VideoGenerationTrigger" if kind == "vidgen" else "HttpSensorTrigger",
        "n": n,
        "arrive_over": args.arrive_over,
        "events": events,
        "polls": polls,
        "polls_per_wait": polls / events if events else float("nan"),
        "cpu_per_1000_polls": worker["cpu"] / polls * 1000 if polls else float("nan"),
        "cpu_ms_per_wait": worker["cpu"] / events * 1000 if events else float("nan"),
        "cpu_total": worker["cpu"],
        "rss_growth_mb": worker["rss_growth"],
        "rss_peak_mb": worker["rss_peak"],
        "max_lag": max(lags) if lags else float("nan"),
        "p50_lag": statistics.median(lags) if lags else float("nan"),
        "connections": len({r["peer"] for r in log}),
        "wall_per_wait": statistics.mean(
            worker["event_times"][i] - worker["start_times"][i] for i in worker["event_times"]
        ),
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


def print_per_wait(rows: list[dict[str, Any]]) -> None:
    """CPU per completed wait (trigger process CPU / completed waits, each wait's whole life) and per
    poll, ours vs the baseline at the same N and interval, with the ratios."""
    by = {(r["trigger"], r["n"]): r for r in rows}
    print("\nCPU per completed wait (trigger process CPU from the first trigger built to the last event / events):")
    header = (
        f"{'N':>6}{'in flight':>11}  {'ours ms/wait':>13}{'polls/wait':>11}{'ms/poll':>9}"
        f"  {'HTTP ms/wait':>13}{'polls/wait':>11}{'ms/poll':>9}  {'per wait':>9}{'per poll':>9}"
    )
    print(header)
    print("-" * len(header))
    for n in sorted({r["n"] for r in rows}):
        ours, base = by.get(("VideoGenerationTrigger", n)), by.get(("HttpSensorTrigger", n))
        if not (ours and base):
            continue
        in_flight = n if not ours["arrive_over"] else n * min(1.0, ours["wall_per_wait"] / ours["arrive_over"])
        print(
            f"{n:>6}{in_flight:>11.0f}  {ours['cpu_ms_per_wait']:>13.2f}{ours['polls_per_wait']:>11.2f}"
            f"{ours['cpu_per_1000_polls']:>9.3f}  {base['cpu_ms_per_wait']:>13.2f}{base['polls_per_wait']:>11.2f}"
            f"{base['cpu_per_1000_polls']:>9.3f}  {base['cpu_ms_per_wait'] / ours['cpu_ms_per_wait']:>8.1f}x"
            f"{base['cpu_per_1000_polls'] / ours['cpu_per_1000_polls']:>8.1f}x"
        )


def client_comparison(args: argparse.Namespace, base_url: str) -> None:
    """One shared aiohttp session vs one shared httpx client, on the same emulator."""
    import requests

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
        print(f"  {client:<8} {figures['cpu_per_1000']:.3f} CPU s per 1,000 requests ({figures['wall']:.1f} s wall)")


def import_comparison(args: argparse.Namespace) -> None:
    """What every DAG parse pays: importing the operator and sensor modules."""
    ours = import_seconds(
        ["airflow_provider_vidgen.operators.vidgen", "airflow_provider_vidgen.sensors.vidgen"], args.runs
    )
    http = import_seconds(["airflow.providers.http.operators.http", "airflow.providers.http.sensors.http"], args.runs)
    print(f"\nImport on top of airflow.sdk (median of {args.runs} fresh processes):")
    print(f"  airflow_provider_vidgen operators + sensors   {ours * 1000:7.1f} ms")
    print(f"  airflow.providers.http operators + sensors    {http * 1000:7.1f} ms   ({ours / http:.2f}x)")


def parent_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    import airflow

    workdir = Path(tempfile.mkdtemp(prefix="vidgen-bench-"))
    args.airflow_home = str(workdir / "airflow-home")
    half = args.complete_after / 2
    emulator, base_url = start_emulator(half, args.complete_after - half, workdir)
    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; emulator {base_url}")
    print(f"poll interval {args.poll:g} s, every generation completes {args.complete_after:g} s after its wait starts")
    if args.arrive_over:
        print(f"waits start evenly over {args.arrive_over:g} s")
    print()
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
        print_per_wait(rows)
        by = {(r["trigger"], r["n"]): r for r in rows}
        for n in args.n:
            ours, base = by.get(("VideoGenerationTrigger", n)), by.get(("HttpSensorTrigger", n))
            if ours and base:
                ratio = base["cpu_per_1000_polls"] / ours["cpu_per_1000_polls"]
                print(f"N={n}: HttpSensorTrigger spends {ratio:.1f}x the CPU per poll of VideoGenerationTrigger")
        if not args.no_extras:
            client_comparison(args, base_url)
    finally:
        emulator.terminate()
        emulator.wait(30)
    if not args.no_extras:
        import_comparison(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000], help="trigger counts")
    parser.add_argument("--poll", type=float, default=5.0, help="poll interval, seconds")
    parser.add_argument("--complete-after", type=float, default=20.0, help="seconds from creation to completed")
    parser.add_argument(
        "--arrive-over", type=float, default=0.0, help="start the waits evenly over this many seconds (0: all at once)"
    )
    parser.add_argument("--no-extras", action="store_true", help="only the trigger runs (no client, import figures)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run HttpSensorTrigger")
    parser.add_argument("--runs", type=int, default=9, help="fresh processes for the import measurement")
    parser.add_argument("--pollers", type=int, default=1000, help="client comparison: concurrent pollers")
    parser.add_argument("--rounds", type=int, default=5, help="client comparison: GETs per poller")
    parser.add_argument("--worker", choices=["vidgen", "http"], help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=["aiohttp", "httpx"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
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
