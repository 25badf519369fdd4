"""Nothing a vidgen trigger does at start-up blocks the triggerer's event loop, also with cold imports.

The triggerer imports a trigger's module on its event loop and then starts many triggers together.
A fresh interpreter (so that nothing of the provider is imported yet) loads what a triggerer has
loaded, then imports the trigger class on the loop, starts several triggers and lets them poll, in
asyncio debug mode: asyncio reports every callback that holds the loop longer than
``slow_callback_duration``. The test counts those reports (it does not time anything itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from airflow_provider_vidgen.testing import Emulator, Timeline
from tests.conftest import conn_json

#: A callback holding the loop longer than this is reported by asyncio (the triggerer warns at 0.2 s).
SLOW_CALLBACK = 0.05

PROBE = """
import asyncio, json, logging, sys, time

import airflow.jobs.triggerer_job_runner  # what a triggerer has loaded before it runs any trigger

slow = []


class Count(logging.Handler):
    def emit(self, record):
        slow.append(record.getMessage()[:400])


asyncio_log = logging.getLogger("asyncio")
asyncio_log.disabled = False  # Airflow's logging config disables loggers it does not know
asyncio_log.handlers[:] = [Count(level=logging.WARNING)]
asyncio_log.setLevel(logging.WARNING)
asyncio_log.propagate = False
ids = json.loads(sys.argv[1])


async def main():
    from importlib import import_module

    # As the triggerer loads a trigger class: on the event loop.
    trigger_class = import_module("airflow_provider_vidgen.triggers.vidgen").VideoGenerationTrigger
    triggers = [
        trigger_class(generation_id=i, vidgen_conn_id="vidgen_default", poll_interval=0.2, end_time=time.time() + 60)
        for i in ids
    ]

    async def run(trigger):
        return [event.payload async for event in trigger.run()]

    return await asyncio.gather(*(run(t) for t in triggers))


loop = asyncio.new_event_loop()
loop.set_debug(True)  # set before the first step runs, so the import step is measured too
loop.slow_callback_duration = float(sys.argv[2])
events = loop.run_until_complete(main())
loop.close()
print(json.dumps({"slow": slow, "statuses": [e[0]["status"] for e in events], "count": [len(e) for e in events]}))
"""


def test_trigger_start_up_and_polls_never_block_the_loop(vidgen_emulator: Emulator) -> None:
    from airflow_provider_vidgen.hooks.vidgen import VidgenHook
    from airflow_provider_vidgen.models import VideosRequest

    env = {**os.environ, "AIRFLOW_CONN_VIDGEN_DEFAULT": conn_json(vidgen_emulator)}
    os.environ["AIRFLOW_CONN_VIDGEN_DEFAULT"] = env["AIRFLOW_CONN_VIDGEN_DEFAULT"]
    try:
        ids = []
        for _ in range(6):
            vidgen_emulator.queue_timeline(Timeline(queued_for=3600, processing_for=0))
            ids.append(VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=5)))
    finally:
        del os.environ["AIRFLOW_CONN_VIDGEN_DEFAULT"]
    probe = subprocess.Popen(
        [sys.executable, "-c", PROBE, json.dumps(ids), str(SLOW_CALLBACK)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once every trigger has polled twice (queued), the generations finish; then one more poll each.
        deadline = time.monotonic() + 240
        while len(vidgen_emulator.requests_to("result")) < 2 * len(ids) and probe.poll() is None:
            assert time.monotonic() < deadline, "the triggers did not poll"
            time.sleep(0.05)
        vidgen_emulator.advance(3600)
        out, err = probe.communicate(timeout=120)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.communicate()
    assert probe.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["statuses"] == ["completed"] * 6
    assert report["count"] == [1] * 6
    assert report["slow"] == [], report["slow"]
