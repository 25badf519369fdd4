"""The triggers' wake-ups: rounded up to the tick grid, one timer per tick for all triggers due at it."""

from __future__ import annotations

import asyncio

from airflow_provider_vidgen.triggers import vidgen


def test_sleeps_due_in_one_tick_share_one_timer_and_end_on_the_grid() -> None:
    async def main() -> tuple[list[float], list[float], float]:
        loop = asyncio.get_running_loop()
        timers_before = set(loop._scheduled)  # type: ignore[attr-defined]
        start = loop.time()
        woke: list[float] = []

        async def one() -> None:
            await vidgen._sleep_on_tick(0.15, remaining=60)
            woke.append(loop.time())

        tasks = [asyncio.ensure_future(one()) for _ in range(200)]
        await asyncio.sleep(0)  # every task is asleep now
        timers = [t.when() for t in loop._scheduled if t not in timers_before]  # type: ignore[attr-defined]
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return timers, woke, start

    timers, woke, start = asyncio.run(main())
    # One timer for the 200 sleeps (a second only if the clock crossed a tick boundary meanwhile), on the grid.
    assert 1 <= len(timers) <= 2
    for when in timers:
        assert abs(when / vidgen.TICK - round(when / vidgen.TICK)) < 1e-6
        assert start + 0.15 <= when + 1e-9 < start + 0.15 + vidgen.TICK + 0.05
    assert len(woke) == 200
    assert all(at >= start + 0.15 - 1e-6 for at in woke)  # none woke before its delay


def test_a_cancelled_sleep_does_not_cancel_the_others_due_at_its_tick() -> None:
    async def main() -> list[str]:
        outcomes: list[str] = []

        async def one(name: str) -> None:
            try:
                await vidgen._sleep_on_tick(0.2, remaining=60)
                outcomes.append(f"{name} woke")
            except asyncio.CancelledError:
                outcomes.append(f"{name} cancelled")
                raise

        first, second = asyncio.ensure_future(one("first")), asyncio.ensure_future(one("second"))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 10)
        return sorted(outcomes)

    assert asyncio.run(main()) == ["first cancelled", "second woke"]


def test_a_sleep_never_runs_past_the_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await vidgen._sleep_on_tick(5.0, remaining=0.05)
        return loop.time() - start

    assert asyncio.run(main()) < 5.0
