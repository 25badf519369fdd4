"""Completion-time estimate and read schedule: learning, bounds, cold start, the p95 lag guarantee."""

from __future__ import annotations

import math
import random
import statistics
import threading
from collections.abc import Callable

import pytest

from airflow_provider_vidgen.completion_times import (
    LATE_MAX_DELAY,
    MIN_SAMPLES,
    CompletionTimes,
    FirstRead,
    first_read_from_samples,
    schedule_key,
)

KEY = "videos/videos/5/text"
# Lognormal with median 120 s and p10 60 s: z(0.9) = 1.2816.
MU, SIGMA = math.log(120), math.log(2) / 1.2816


def estimate(**kwargs: object) -> CompletionTimes:
    return CompletionTimes(explore_share=0.0, rng=random.Random(0), **kwargs)  # type: ignore[arg-type]


# -- key -------------------------------------------------------------------------------------------


def test_schedule_key_names_every_part() -> None:
    assert schedule_key("videos", "videos_fast", 10, "image") == "videos/videos_fast/10/image"
    assert schedule_key("starvideos", "starvideos_v3", 5.0, "text") == "starvideos/starvideos_v3/5/text"


def test_schedule_key_allows_unknown_parts() -> None:
    assert schedule_key(None, None, None, None) == "?/?/?/?"
    assert schedule_key("videos", "", None, "text") == "videos/?/?/text"


def test_schedule_key_same_duration_same_key() -> None:
    assert schedule_key("videos", "videos", 5, "text") == schedule_key("videos", "videos", 5.0, "text")


# -- learning --------------------------------------------------------------------------------------


def test_observe_keeps_the_interval() -> None:
    times = estimate()
    times.observe(KEY, 50.0, 80.0)
    assert times.samples(KEY) == [(50.0, 80.0)]


def test_observe_without_an_unfinished_read_learns_zero() -> None:
    times = estimate()
    times.observe(KEY, None, 40.0)
    assert times.samples(KEY) == [(0.0, 40.0)]


def test_observe_never_learns_past_the_completed_read_or_below_zero() -> None:
    times = estimate()
    times.observe(KEY, 90.0, 80.0)  # clocks that disagree
    times.observe(KEY, -3.0, 10.0)
    assert times.samples(KEY) == [(0.0, 10.0), (80.0, 80.0)]


def test_observe_ignores_waits_that_skipped_reads() -> None:
    times = estimate()
    times.observe(KEY, 1.0, 62.0, skipped=True)
    assert times.samples(KEY) == []


def test_samples_per_key_are_bounded_to_the_newest() -> None:
    times = estimate(min_samples=2, max_samples=3)
    for age in (10.0, 20.0, 30.0, 40.0):
        times.observe(KEY, age, age + 5)
    assert times.samples(KEY) == [(20.0, 25.0), (30.0, 35.0), (40.0, 45.0)]


def test_keys_are_bounded_least_recently_used_first() -> None:
    times = estimate(max_keys=2)
    times.observe("a", 1.0, 2.0)
    times.observe("b", 1.0, 2.0)
    times.observe("a", 3.0, 4.0)  # "a" used last: "b" goes first
    times.observe("c", 1.0, 2.0)
    assert times.samples("b") == []
    assert times.samples("a") == [(1.0, 2.0), (3.0, 4.0)]
    assert times.samples("c") == [(1.0, 2.0)]


def test_concurrent_observers_lose_nothing_within_the_bound() -> None:
    times = estimate(max_samples=256)
    barrier = threading.Barrier(4)

    def observe(offset: int) -> None:
        barrier.wait()
        for i in range(50):
            times.observe(KEY, float(offset * 100 + i), float(offset * 100 + i + 1))

    threads = [threading.Thread(target=observe, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(times.samples(KEY)) == 200


def test_clear_forgets_everything() -> None:
    times = estimate()
    times.observe(KEY, 1.0, 2.0)
    times.clear()
    assert times.samples(KEY) == []


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_samples"):
        CompletionTimes(min_samples=30, max_samples=20)
    with pytest.raises(ValueError, match="explore_share"):
        CompletionTimes(explore_share=1.5)


# -- schedule --------------------------------------------------------------------------------------


def test_cold_start_is_the_fixed_schedule() -> None:
    times = estimate()
    for _ in range(MIN_SAMPLES - 1):
        times.observe(KEY, 100.0, 100.0)
    assert times.first_read(KEY, 30.0) == FirstRead(learned_from=MIN_SAMPLES - 1)  # today's schedule exactly
    times.observe(KEY, 100.0, 100.0)
    assert times.first_read_after(KEY, 30.0) == pytest.approx(100.0 + 0.95 * 30.0)


def test_unknown_key_has_no_estimate() -> None:
    assert estimate().first_read_after("starvideos/?/?/?", 30.0) is None


def test_first_read_is_the_fastest_sample_plus_the_p95_span() -> None:
    # All alike: no generation faster than 100 s was seen; reading first at 100 + 0.95 P delays
    # none by more than fixed polling's p95.
    assert first_read_from_samples([100.0] * 40, 60.0) == pytest.approx(157.0)


def test_few_samples_never_allow_a_skip() -> None:
    assert first_read_from_samples([100.0] * 19, 30.0) is None


def test_no_samples_or_no_interval_no_skip() -> None:
    assert first_read_from_samples([], 30.0) is None
    assert first_read_from_samples([100.0] * 40, 0.0) is None


def test_first_read_is_never_negative() -> None:
    assert first_read_from_samples([0.0] * 40, 30.0) == pytest.approx(28.5)


def test_a_fast_minority_stops_the_skip_below_it() -> None:
    # 6 of 100 take 10 s, the rest 200 s: a first read at 200 + 28.5 would detect 6% more than
    # 0.95 P late, where fixed polling detects 5% that late: no skip.
    assert first_read_from_samples([10.0] * 6 + [200.0] * 94, 30.0) is None
    # 5 of 100 learned may stand for more than 5% of all generations (the rule is cautious).
    assert first_read_from_samples([10.0] * 5 + [200.0] * 95, 30.0) is None
    # 2 of 100 stay within 5% even counted cautiously.
    assert first_read_from_samples([10.0] * 2 + [200.0] * 98, 30.0) == pytest.approx(228.5)


def test_exploring_waits_read_on_the_fixed_schedule() -> None:
    times = CompletionTimes(explore_share=0.25, rng=random.Random(3))
    for _ in range(40):
        times.observe(KEY, 100.0, 100.0)
    answers = [times.first_read(KEY, 30.0) for _ in range(1000)]
    exploring = [a for a in answers if not a.skips]
    assert 150 < len(exploring) < 350
    assert all(a.at_age == pytest.approx(128.5) and a.phase == 0 for a in answers if a.skips)
    # An exploring wait reads first at a random phase within the interval after its normal first check.
    phases = [a.phase for a in exploring]
    assert all(0 <= phase < 30.0 for phase in phases)
    assert min(phases) < 5
    assert max(phases) > 25


def test_all_waits_explore_while_the_samples_allow_no_skip() -> None:
    times = estimate()
    for _ in range(MIN_SAMPLES):  # intervals of a whole poll interval: no skip allowed yet
        times.observe(KEY, 100.0, 130.0)
    answers = [times.first_read(KEY, 30.0) for _ in range(200)]
    assert all(not a.skips and 0 <= a.phase < 30.0 and a.learned_from == MIN_SAMPLES for a in answers)
    assert len({a.phase for a in answers}) > 100


def test_completions_count_as_spread_over_their_interval() -> None:
    # 4 of 100 seen within [150, 250], 96 at 200: half of each interval lies below 200, and 2 of
    # 100 faster allow a first read at 200 + 0.95 P ...
    assert first_read_from_samples([(150.0, 250.0)] * 4 + [200.0] * 96, 30.0) == pytest.approx(228.5)
    # ... where the same 4 known to take 150 s do not.
    assert first_read_from_samples([150.0] * 4 + [200.0] * 96, 30.0) is None


def test_explore_share_one_never_skips() -> None:
    times = CompletionTimes(explore_share=1.0, rng=random.Random(3))
    for _ in range(40):
        times.observe(KEY, 100.0, 130.0)
    assert all(times.first_read_after(KEY, 30.0) is None for _ in range(100))


# -- the p95 lag guarantee, on simulated generations -------------------------------------------------


def _reads(d: float, first: float, poll: float, rng: random.Random) -> tuple[float | None, float, int]:
    """Read first at ``first`` then every ``poll`` (+/-10% jitter, as the trigger does): the last
    age seen unfinished (``None``: none), the first age seen completed, and the reads made."""
    last: float | None = None
    age, reads = first, 1
    while age < d:
        last = age
        age += poll * rng.uniform(0.9, 1.1)
        reads += 1
    return last, age, reads


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


Draw = Callable[[random.Random], float]

#: Completion times spread over more than an interval (the lag after the first read is then about
#: uniform over the interval, as the rule assumes).
DISTRIBUTIONS: dict[str, Draw] = {
    "lognormal 120/60": lambda rng: rng.lognormvariate(MU, SIGMA),
    "exponential mean 90": lambda rng: rng.expovariate(1 / 90),
    "bimodal 10% at ~20 s": lambda rng: rng.uniform(15, 25) if rng.random() < 0.1 else rng.lognormvariate(MU, SIGMA),
    "uniform 200..400": lambda rng: rng.uniform(200, 400),
}


def _first(plan: FirstRead, start: float) -> float:
    """The age of a wait's first read: its normal first check (``start``) plus an exploring phase,
    or the age the estimate skips to (never before the normal first check)."""
    return start + plan.phase if plan.at_age is None else max(plan.at_age, start)


def _simulate(
    draw: Draw, poll: float, seed: str, *, learn: int = 512
) -> tuple[float | None, list[float], list[float], int, int]:
    """Learn online from ``learn`` waits (cold start on the fixed schedule: first read within 2 s, then
    every ``poll``; then exploring or skipping as the estimate says), then run 20,000 generations both
    ways (the same jitter for both): the median first read of the skipping waits, the lags fixed and
    adaptive, the reads of each."""
    rng = random.Random(seed)
    times = CompletionTimes(rng=random.Random(f"{seed} estimate"))  # the default share of explorers
    for _ in range(learn):
        plan = times.first_read(KEY, poll)
        last, completed, _ = _reads(draw(rng), _first(plan, rng.uniform(0, 2)), poll, rng)
        times.observe(KEY, last, completed, skipped=plan.skips)
    fixed_lags, adaptive_lags, skips = [], [], []
    fixed_reads = adaptive_reads = 0
    for _ in range(20000):
        d, start, jitter = draw(rng), rng.uniform(0, 2), rng.random()
        _, seen, reads = _reads(d, start, poll, random.Random(jitter))
        fixed_lags.append(seen - d)
        fixed_reads += reads
        plan = times.first_read(KEY, poll)
        if plan.at_age is not None:
            skips.append(plan.at_age)
        _, seen, reads = _reads(d, _first(plan, start), poll, random.Random(jitter))
        adaptive_lags.append(seen - d)
        adaptive_reads += reads
    return (statistics.median(skips) if skips else None), fixed_lags, adaptive_lags, fixed_reads, adaptive_reads


@pytest.mark.parametrize("poll", [30.0, 60.0])
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_p95_lag_no_worse_than_fixed_polling(name: str, poll: float) -> None:
    _, fixed_lags, adaptive_lags, fixed_reads, adaptive_reads = _simulate(DISTRIBUTIONS[name], poll, name)
    # Monte Carlo noise on a p95 of 20,000 draws is well below 2% of the interval.
    assert _p95(adaptive_lags) <= _p95(fixed_lags) + 0.02 * poll
    assert adaptive_reads <= fixed_reads


@pytest.mark.parametrize(
    ("name", "poll", "first_after", "share"),
    [
        # At 30 s too: fixed reads all at the same ages (created + multiples of the interval) tell
        # nothing below 30 s; the exploring waits' random phases do.
        ("lognormal 120/60", 30.0, 35, 0.85),
        ("lognormal 120/60", 60.0, 60, 0.8),
        ("uniform 200..400", 60.0, 150, 0.5),
    ],
)
def test_learned_floor_skips_reads(name: str, poll: float, first_after: float, share: float) -> None:
    first, _, _, fixed_reads, adaptive_reads = _simulate(DISTRIBUTIONS[name], poll, f"skips {name}", learn=2000)
    assert first is not None
    assert first > first_after
    assert adaptive_reads < share * fixed_reads


@pytest.mark.parametrize("poll", [30.0, 60.0])
def test_narrow_distribution_lag_stays_within_an_interval_and_jitter(poll: float) -> None:
    # Completion times within a few seconds: most generations complete just after the first read and
    # wait nearly a whole interval, so the p95 is that of one (jittered) interval.
    first, _, adaptive_lags, fixed_reads, adaptive_reads = _simulate(lambda rng: rng.uniform(295, 305), poll, "narrow")
    assert first is not None
    assert _p95(adaptive_lags) <= 1.1 * poll
    assert adaptive_reads < 0.5 * fixed_reads


def test_a_skip_costs_the_fastest_at_most_the_skipped_span() -> None:
    times = estimate()
    rng = random.Random(11)
    for _ in range(256):
        plan = times.first_read(KEY, 30.0)
        last, completed, _ = _reads(rng.uniform(295, 305), _first(plan, rng.uniform(0, 2)), 30.0, rng)
        times.observe(KEY, last, completed, skipped=plan.skips)
    first = times.first_read_after(KEY, 30.0)
    assert first is not None
    for _ in range(2000):
        d = rng.uniform(295, 305)
        _, seen, _ = _reads(d, first, 30.0, rng)
        # Below the first read: late by first - d; after it: within one (jittered) interval.
        assert seen - d <= max(first - d, 0) + 1.1 * 30.0


# -- late back-off ---------------------------------------------------------------------------------


def late_estimate() -> CompletionTimes:
    times = estimate()
    for age in range(1, 101):  # p99 = 99 s: late after 148.5 s
        times.observe(KEY, float(age), float(age))
    return times


def test_late_after_is_a_multiple_of_the_p99() -> None:
    assert late_estimate().late_after(KEY) == pytest.approx(1.5 * 99)
    assert estimate().late_after(KEY) is None


def test_late_backoff_is_off_unless_allowed() -> None:
    assert late_estimate().late_backoff_delay(KEY, 10_000.0, 5.0, allowed=False) == 5.0


def test_late_backoff_keeps_the_interval_until_late_or_without_estimate() -> None:
    assert late_estimate().late_backoff_delay(KEY, 140.0, 5.0, allowed=True) == 5.0
    assert estimate().late_backoff_delay(KEY, 10_000.0, 5.0, allowed=True) == 5.0


def test_late_backoff_grows_towards_the_maximum() -> None:
    times = late_estimate()
    delays = [times.late_backoff_delay(KEY, age, 5.0, allowed=True) for age in (149.0, 300.0, 900.0, 10_000.0)]
    assert delays == sorted(delays)
    assert delays[0] == pytest.approx(5.0 * 149.0 / 148.5)
    assert delays[-1] == LATE_MAX_DELAY


def test_late_backoff_never_below_the_interval_nor_above_a_longer_one() -> None:
    times = late_estimate()
    assert times.late_backoff_delay(KEY, 10_000.0, 90.0, allowed=True) == 90.0
    assert times.late_backoff_delay(KEY, 10_000.0, 5.0, allowed=True, max_delay=20.0) == 20.0


def test_an_age_no_generation_takes_is_not_learned() -> None:
    """A ``created`` of 0 (or a clock far off) gives an age of decades: not learned, so it can neither
    skew the estimate nor make computing it cost time and memory in proportion to the age."""
    times = estimate()
    times.observe(KEY, 1.7e9, 1.7e9 + 30)
    times.observe(KEY, None, 7 * 3600)
    assert times.samples(KEY) == []
    rng = random.Random(3)
    for _ in range(MIN_SAMPLES + 5):
        age = rng.lognormvariate(MU, SIGMA)
        times.observe(KEY, age - 10, age + 20)
    assert len(times.samples(KEY)) == MIN_SAMPLES + 5
    poisoned = [*times.samples(KEY), (1.7e9, 1.7e9 + 30)]  # given to the rule directly: ignored there too
    assert first_read_from_samples(poisoned, 30.0) == first_read_from_samples(times.samples(KEY), 30.0)


def test_asking_about_keys_never_learned_keeps_nothing() -> None:
    times = estimate(max_keys=4)
    for i in range(1000):
        times.late_after(f"videos/videos/{i}/text")
        times.samples(f"starvideos/x/{i}/text")
    assert times._sorted == {}
