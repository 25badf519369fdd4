"""Adaptive polling benchmark (a script, not a test): API reads per video and detection lag.

Generations whose completion times follow a lognormal distribution (median 120 s, p10 60 s by
default) are created over time against the emulator (a separate process): ``--per-second`` every
wall-clock second, just after the second turns (the API's ``created`` is whole seconds, so the
batches keep it exact), ``--n`` in all. Each is checked once, as an operator checks before
deferring, then waited on by a trigger in one fresh process with one event loop, as a triggerer
runs them. Time is scaled down by ``--scale`` (completion times, poll intervals and the trigger's
own time constants alike); figures are reported in API seconds.

Modes, at each ``--poll`` interval:

- ``fixed``: ``VideoGenerationTrigger`` on the fixed schedule, after one check before deferring
  (the create operators before they deferred a just-created generation without it);
- ``fixed, no check``: the same without the check before deferring (as the create operators now
  defer a generation they have just created);
- ``rule, delayed start``: the schedule rule of ``completion_times`` on today's trigger: an estimate
  learned from a fixed run on ``--warm`` other generations (from the emulator's log: the last read
  before each completion and the first after) gives each wait its first read, and the wait's trigger
  starts then (a share of waits explores on the fixed schedule, as the estimate asks);
- ``adaptive (warmed)``: the trigger with the completion-time estimate (no check before
  deferring), after ``--warm`` generations waited on first in the same process (not counted);
- ``adaptive (online)``: the same estimate, learning from the measured generations only;
- ``HttpSensorTrigger``: the HTTP provider's trigger polling the same result URLs at the same
  interval (the emulator answers it 404 until the generation is done).

Reported per run: API reads per video (the check before deferring included, and the triggerer's
share), detection lag p50 / p95 / max (from the generation's completion to the trigger's event),
triggerer CPU per completed wait, and each mode's reads against fixed polling.

The adaptive modes need a trigger that takes the estimate (``schedule_key``); on a build whose
trigger does not, they are reported as not available.

Usage: python benchmarks/adaptive_polling.py [--n 500] [--poll 30 60] [--scale 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trigger_capacity import API_KEY, admin, cpu_seconds, raise_fd_limit, set_connections, start_emulator
from trigger_capacity import make_trigger as capacity_trigger

FAMILY, MODEL, DURATION, MODE = "videos", "videos", 5, "text"
MODES = ("fixed", "fixed-nocheck", "delayed-start", "adaptive-warm", "adaptive-online", "http")
#: The modes that read once before deferring (today's operators); the others defer a just-created
#: generation without that read, as the create operators now do.
CHECKED = ("fixed", "delayed-start", "http")
TITLES = {
    "fixed": "fixed",
    "fixed-nocheck": "fixed, no check",
    "delayed-start": "rule, delayed start",
    "adaptive-warm": "adaptive (warmed)",
    "adaptive-online": "adaptive (online)",
    "http": "HttpSensorTrigger",
}


def adaptive_available() -> bool:
    """Whether this build's trigger takes the completion-time estimate (a ``schedule_key``)."""
    from airflow_provider_vidgen import waiting

    return "schedule_key" in getattr(waiting, "STATE_KEYS", ())


def completion_times(n: int, median: float, p10: float, seed: int) -> list[float]:
    """``n`` completion times (API seconds) from the lognormal with this median and 10th percentile."""
    sigma = math.log(median / p10) / statistics.NormalDist().inv_cdf(0.9)
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median), sigma) for _ in range(n)]


# -- worker: the triggers of one run on one loop ---------------------------------------------------


def scale_trigger_clock(scale: float) -> None:
    """Scale the trigger's own time constants with the rest of the run (its first-check window and wake-up grid)."""
    from airflow_provider_vidgen import waiting
    from airflow_provider_vidgen.triggers import vidgen

    vidgen.TICK *= scale
    waiting.FIRST_CHECK_WITHIN *= scale


def make_trigger(mode: str, generation_id: str, poll: float, base_url: str) -> Any:
    if mode == "http":
        set_connections(base_url)
        return capacity_trigger("http", generation_id, poll)
    from airflow_provider_vidgen.completion_times import schedule_key
    from airflow_provider_vidgen.triggers.vidgen import VideoGenerationTrigger

    kwargs: dict[str, Any] = {}
    if mode.startswith("adaptive"):
        kwargs["schedule_key"] = schedule_key(FAMILY, MODEL, DURATION, MODE)
    if mode in CHECKED:
        kwargs["last_status"] = "queued"  # what the check before deferring saw
    return VideoGenerationTrigger(
        "vidgen_bench",
        generation_id=generation_id,
        poll_interval=poll,
        timeout=3600.0,
        started_at=time.time(),
        **kwargs,
    )


def preload(mode: str) -> None:
    """Import what the triggers load on first use, so the CPU figure is that of waiting."""
    import importlib

    if mode == "http":
        importlib.import_module("airflow.providers.http.triggers.http")
        importlib.import_module("airflow.providers.http.hooks.http")
        return
    from airflow_provider_vidgen.triggers import vidgen

    vidgen._import_runtime()
    vidgen._runtime_loaded = True


def warmed_estimate(observations: list[list[float | None]], seed: int) -> Any:
    """A completion-time estimate that learned ``observations`` (``[last unfinished, first completed]`` ages)."""
    from airflow_provider_vidgen.completion_times import CompletionTimes, schedule_key

    estimate = CompletionTimes(rng=random.Random(seed))
    key = schedule_key(FAMILY, MODEL, DURATION, MODE)
    for last, completed in observations:
        assert completed is not None
        estimate.observe(key, last, completed)
    return estimate


async def run_worker(
    mode: str, poll: float, base_url: str, bound: float, ready: Path, estimate: Any = None
) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_VIDGEN_BENCH"] = json.dumps({"conn_type": "vidgen", "host": base_url, "password": API_KEY})
    preload(mode)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    from airflow_provider_vidgen.completion_times import schedule_key

    key = schedule_key(FAMILY, MODEL, DURATION, MODE)
    event_times: dict[str, float] = {}
    first_reads: list[float | None] = []
    waits: list[asyncio.Future[None]] = []

    async def run_one(generation_id: str, created: int) -> None:
        if estimate is not None:
            # The schedule rule without the trigger's help: the wait starts when its first read is due.
            first = estimate.first_read_after(key, poll)
            first_reads.append(first)
            if first is not None:
                await asyncio.sleep(max(0.0, created + first - time.time()))
        trigger = make_trigger(mode, generation_id, poll, base_url)
        async for _event in trigger.run():
            event_times[generation_id] = time.time()
            break

    stalls: list[float] = []

    async def heartbeat() -> None:  # how long the event loop was held at a time (wake-ups later than asked)
        while True:
            asked = time.monotonic()
            await asyncio.sleep(0.01)
            stalls.append(time.monotonic() - asked - 0.01)

    beating = asyncio.ensure_future(heartbeat())
    ready.touch()  # the parent starts creating now
    cpu_start = cpu_seconds()
    while line := await reader.readline():
        batch = json.loads(line)
        if batch is None:
            break
        waits.extend(asyncio.ensure_future(run_one(i, created)) for i, created in batch)
    await asyncio.wait_for(asyncio.gather(*waits), bound)
    beating.cancel()
    return {
        "max_stall": max(stalls, default=0.0),
        "event_times": event_times,
        "cpu": cpu_seconds() - cpu_start,
        "waits": len(waits),
        "first_reads": first_reads,
    }


def worker_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    scale_trigger_clock(args.scale)
    estimate = None
    if args.observations:
        estimate = warmed_estimate(json.loads(Path(args.observations).read_text()), args.seed)
    result = asyncio.run(run_worker(args.worker, args.poll_scaled, args.base_url, args.bound, args.ready, estimate))
    # A file, not stdout: the triggers log to stdout (a file too: a pipe nobody reads would fill up and block them).
    args.result.write_text(json.dumps(result))


# -- parent: create over time, feed the worker, read the emulator's log ------------------------------


def feed(worker: subprocess.Popen[str], base_url: str, count: int, per_second: int, check: bool) -> list[str]:
    """Create ``count`` generations, ``per_second`` just after each wall-clock second; check each once
    (as an operator before deferring); hand each batch to the worker (ids with their ``created``).
    The ids, in creation order."""
    import requests

    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": MODEL, "prompt": "benchmark", "duration": DURATION}
    ids: list[str] = []
    with requests.Session() as session:
        while len(ids) < count:
            time.sleep(1.0 - time.time() % 1.0 + 0.002)
            created = int(time.time())  # what the API reports as created: this whole second
            batch = []
            for _ in range(min(per_second, count - len(ids))):
                answer = session.post(base_url + "/v1/videos/videos", json=body, headers=headers, timeout=30)
                batch.append([answer.json()["data"]["projectId"], created])
            if check:
                for generation_id, _ in batch:
                    session.get(f"{base_url}/v1/result/{generation_id}", headers=headers, timeout=30)
            assert worker.stdin is not None
            worker.stdin.write(json.dumps(batch) + "\n")
            worker.stdin.flush()
            ids.extend(generation_id for generation_id, _ in batch)
    return ids


def observations(base_url: str, ids: list[str]) -> list[list[float | None]]:
    """What the waits on ``ids`` saw, from the emulator's log: per generation the ages (seconds since
    its whole-second ``created``) of the last read before its completion and the first one after."""
    done_at = {g["id"]: (g["created_at"], g["done_at"]) for g in admin(base_url, "/_emulator/generations")}
    reads: dict[str, list[float]] = {i: [] for i in ids}
    for entry in admin(base_url, "/_emulator/requests"):
        if entry["endpoint"] == "result" and entry["generation_id"] in reads:
            reads[entry["generation_id"]].append(entry["time"])
    seen = []
    for i in ids:
        created_at, done = done_at[i]
        created = math.floor(created_at)
        before = [t - created for t in reads[i] if t < done]
        after = [t - created for t in reads[i] if t >= done]
        if after:
            seen.append([max(before) if before else None, min(after)])
    return seen


def run_phase(
    mode: str, poll: float, args: argparse.Namespace, base_url: str, *, n: int | None = None, seed: int | None = None
) -> dict[str, Any]:
    n = args.n if n is None else n
    seed = args.seed if seed is None else seed
    warm = args.warm if mode == "adaptive-warm" else 0
    learned: Path | None = None
    if mode == "delayed-start":  # learn from a fixed run on other generations first
        warmup = run_phase("fixed", poll, args, base_url, n=args.warm, seed=seed + 1)
        learned = Path(args.airflow_home).parent / f"observations-{poll:g}.json"
        learned.write_text(json.dumps(warmup["observations"]))
    admin(base_url, "/_emulator/reset", {})
    durations = completion_times(warm + n, args.median, args.p10, seed)
    for d in durations:  # creates are sequential: the i-th create follows the i-th timeline
        seconds = d * args.scale
        admin(base_url, "/_emulator/queue-timeline", {"queued_for": seconds / 2, "processing_for": seconds / 2})
    bound = (max(durations) + 4 * poll) * args.scale + (warm + n) / args.per_second + 60
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-{poll:g}-", dir=Path(args.airflow_home).parent))
    log = (run_dir / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--poll-scaled",
            str(poll * args.scale),
            "--scale",
            str(args.scale),
            "--base-url",
            base_url,
            "--bound",
            str(bound),
            "--seed",
            str(seed),
            "--ready",
            str(run_dir / "ready"),
            "--result",
            str(run_dir / "result.json"),
            *(["--observations", str(learned)] if learned else []),
        ],
        stdin=subprocess.PIPE,
        stdout=log,  # the triggers' logs: a file, not a pipe nobody reads while the run goes on
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "AIRFLOW_HOME": args.airflow_home},
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "ready").exists():
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError(f"worker {mode} did not start:\n{(run_dir / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.05)
    started = time.time()
    checked = mode in CHECKED and not args.no_check
    ids = feed(worker, base_url, warm + n, args.per_second, checked)
    worker.communicate(json.dumps(None) + "\n", timeout=bound + 60)
    log.close()
    if worker.returncode != 0:
        raise RuntimeError(f"worker {mode} failed:\n{(run_dir / 'worker.log').read_text()[-3000:]}")
    result = json.loads((run_dir / "result.json").read_text())
    measured = ids[warm:]
    stats = admin(base_url, "/_emulator/stats")["generations"]
    done_at = {g["id"]: g["done_at"] for g in admin(base_url, "/_emulator/generations")}
    events = result["event_times"]
    lags = sorted((events[i] - done_at[i]) / args.scale for i in measured if i in events)
    reads = [stats[i]["reads"] for i in measured]
    skipped = [q / args.scale for q in result["first_reads"] if q is not None]
    return {
        "observations": observations(base_url, ids),
        "first_read": statistics.median(skipped) if skipped else None,
        "skipping": len(skipped) / len(result["first_reads"]) if result["first_reads"] else None,
        "mode": mode,
        "poll": poll,
        "n": len(measured),
        "events": len(lags),
        "reads": statistics.mean(reads),
        "check_reads": 1 if checked else 0,
        "p50": statistics.median(lags) if lags else math.nan,
        "p95": lags[math.ceil(0.95 * len(lags)) - 1] if lags else math.nan,
        "max": lags[-1] if lags else math.nan,
        "cpu_per_wait_ms": result["cpu"] / result["waits"] * 1000,
        "max_stall": result["max_stall"],
        "wall": time.time() - started,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'mode':<20}{'poll s':>7}{'N':>6}{'events':>8}{'reads/video':>13}{'triggerer':>11}{'vs fixed':>10}"
        f"{'p50 lag s':>11}{'p95 lag s':>11}{'max lag s':>11}{'CPU ms/wait':>13}{'first read (waits)':>20}"
    )
    print(header)
    print("-" * len(header))
    fixed = {r["poll"]: r["reads"] for r in rows if r["mode"] == "fixed"}
    for r in rows:
        base = fixed.get(r["poll"])
        ratio = f"{r['reads'] / base:.0%}" if base else "-"
        print(
            f"{TITLES[r['mode']]:<20}{r['poll']:>7g}{r['n']:>6}{r['events']:>8}{r['reads']:>13.2f}"
            f"{r['reads'] - r['check_reads']:>11.2f}{ratio:>10}{r['p50']:>11.1f}{r['p95']:>11.1f}{r['max']:>11.1f}"
            f"{r['cpu_per_wait_ms']:>13.2f}"
            + (f"{r['first_read']:>11.0f} s ({r['skipping']:.0%})" if r["first_read"] is not None else f"{'-':>20}")
        )


def parent_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    import airflow

    workdir = Path(tempfile.mkdtemp(prefix="vidgen-adaptive-"))
    args.airflow_home = str(workdir / "airflow-home")
    emulator, base_url = start_emulator(0.5, 1.0, workdir)
    adaptive = adaptive_available()
    sample = sorted(completion_times(100_000, args.median, args.p10, args.seed))
    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; emulator {base_url}")
    print(
        f"{args.n} generations, {args.per_second} per second, completion times lognormal median {args.median:g} s, "
        f"p10 {args.p10:g} s (p90 {sample[90_000]:.0f} s, p99 {sample[99_000]:.0f} s); time scaled by {args.scale:g}; "
        f"{'one check before deferring' if not args.no_check else 'no check before deferring'}"
    )
    if not adaptive:
        print("adaptive: not available in this build (the trigger takes no completion-time estimate)")
    print()
    modes = [m for m in args.modes if adaptive or not m.startswith("adaptive")]
    rows = []
    try:
        for poll in args.poll:
            for mode in modes:
                row = run_phase(mode, poll, args, base_url)
                rows.append(row)
                print(
                    f"  done: {TITLES[mode]} at {poll:g} s in {row['wall']:.0f} s"
                    f" (longest hold of the event loop {row['max_stall'] * 1000:.0f} ms)",
                    flush=True,
                )
    finally:
        emulator.terminate()
        emulator.wait(30)
    print()
    print_table(rows)
    by = {(r["mode"], r["poll"]): r for r in rows}
    for poll in args.poll:
        http = by.get(("http", poll))
        for mode in ("fixed", "adaptive-warm", "adaptive-online"):
            ours = by.get((mode, poll))
            if http and ours:
                ratio = http["cpu_per_wait_ms"] / ours["cpu_per_wait_ms"]
                print(
                    f"poll {poll:g} s: HttpSensorTrigger spends {ratio:.1f}x the CPU per completed wait"
                    f" of {TITLES[mode]}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="measured generations per run")
    parser.add_argument("--poll", type=float, nargs="+", default=[30.0, 60.0], help="poll intervals, API seconds")
    parser.add_argument("--scale", type=float, default=0.01, help="run time per API second")
    parser.add_argument("--per-second", type=int, default=10, help="generations created per wall-clock second")
    parser.add_argument("--median", type=float, default=120.0, help="median completion time, API seconds")
    parser.add_argument("--p10", type=float, default=60.0, help="10th percentile completion time, API seconds")
    parser.add_argument("--warm", type=int, default=600, help="generations waited on before a warmed run")
    parser.add_argument("--seed", type=int, default=1, help="seed of the completion times (the same in every run)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="runs at each interval")
    parser.add_argument("--no-check", action="store_true", help="no check before deferring")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--poll-scaled", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--bound", type=float, default=600, help=argparse.SUPPRESS)
    parser.add_argument("--observations", help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
