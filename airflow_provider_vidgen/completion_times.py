"""How long generations take, learned in this process, and the read schedule that follows from it.

A wait reads the result endpoint every ``poll_interval`` seconds. Reads of a generation that cannot
be finished yet are wasted: this module learns, per kind of generation (:func:`schedule_key`), how
long generations take from the completions this process observed, and from that how long a wait may
skip reading after the generation's ``created`` timestamp (:meth:`CompletionTimes.first_read_after`)
without making detection later at the 95th percentile than fixed polling at the same interval.

Pure standard library and cheap to import: the triggerer imports it on its event loop. One
:class:`CompletionTimes` per process (:data:`ESTIMATE`) is shared by every wait of the process, like
the HTTP session; its methods take a lock, so worker threads may use it as well as the event loop.

**What a completion tells.** A wait sees a completion between two reads: the last one that saw the
generation unfinished and the first one that saw it completed (both as seconds since ``created``).
The estimate keeps that interval and counts the completion as spread evenly over it (a completion
seen between a read at 30 s and one at 60 s counts half below 45 s). Waits on the fixed schedule all
read at about the same ages (``created`` + a few seconds + multiples of the interval): their
intervals share their ends and tell little about where in the interval generations complete.

**Exploring waits.** So once a key has :data:`MIN_SAMPLES` completions, a wait that is not told
to skip reads takes its first read at a random phase in ``[0, poll_interval)`` after its normal
first check (then every ``poll_interval``): its interval lies anywhere, and together they resolve
the distribution. Such a wait still detects its completion less than one interval (plus jitter)
late, as fixed polling does, and reads no more often. All waits explore while the estimate allows
no skip; once it does, :data:`EXPLORE_SHARE` of them.

**Which completions are learned.** Those of waits that did not skip reads on this estimate's
advice (fixed and exploring ones). A wait that skipped sees its fast generations completed at its
first read, with no unfinished read after the first seconds: learning from it would put their
completion anywhere from zero and bias the estimate down, then shorten the skip further.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

#: Below this many learned completions a key has no estimate: waits poll on the fixed schedule.
MIN_SAMPLES = 20
#: Learned completions kept per key (the newest).
MAX_SAMPLES = 512
#: Keys kept (the most recently used); the least recently used is forgotten first.
MAX_KEYS = 128
#: Fixed polling detects a completion more than this share of the interval late for 5% of
#: generations (its lag is about uniform over the interval): the p95 the schedule must not exceed.
P95_OF_INTERVAL = 0.95
#: The share of generations allowed to be detected later than ``P95_OF_INTERVAL * poll_interval``.
TAIL_SHARE = 0.05
#: Once a key's estimate allows a skip, this share of waits still explores (and is learned from).
EXPLORE_SHARE = 0.1
#: The first-read rule of a key is computed again after this many new completions (it costs some
#: milliseconds: not once per completion on the triggerer's event loop).
REFRESH_EVERY = 16
#: A generation counts as late once it is older than this multiple of the key's 99th percentile.
LATE_FACTOR = 1.5
#: The quantile :data:`LATE_FACTOR` multiplies.
LATE_QUANTILE = 0.99
#: The longest delay between reads of a late generation (the API advises reads every 30 to 60 s).
LATE_MAX_DELAY = 60.0

#: Completions said to take longer than this (seconds) are not learned: such an age comes from a
#: ``created`` far in the past or a clock far off, and one such sample would skew the estimate and
#: make computing it cost time and memory in proportion to the age.
MAX_AGE = 6 * 3600.0

UNKNOWN = "?"


def schedule_key(family: str | None, model: str | None, duration: float | None, mode: str | None) -> str:
    """The key completions are learned under: generations alike in these take alike long.

    :param family: API family (``videos``, ``starvideos``); ``None`` if unknown.
    :param model: Model name; ``None`` if unknown.
    :param duration: Requested seconds of video; ``None`` if unknown (or the API default).
    :param mode: Generation mode (e.g. ``text``, ``image``); ``None`` if unknown.
    :return: ``"family/model/duration/mode"``, with ``?`` for each unknown part.
    """
    length = UNKNOWN if duration is None else f"{float(duration):g}"
    parts = (family, model, length, mode)
    return "/".join(UNKNOWN if part is None or part == "" else str(part) for part in parts)


#: One learned completion: ``(low, high)`` seconds since ``created`` (``low == high``: known exactly).
Sample = tuple[float, float]


#: Rounds of the self-consistency step (Turnbull's estimator for interval-censored data) that move
#: each completion's mass within its interval towards where the others say completions are.
SHARPEN_ROUNDS = 4
#: Width of the estimate's bins, as a share of the poll interval.
BIN_SHARE = 0.1


class _Spread:
    """The learned completions as a distribution over bins of ``width`` seconds.

    A completion known exactly counts at its time; one seen within an interval is spread over its
    interval: evenly at first, then :data:`SHARPEN_ROUNDS` self-consistency rounds (each
    completion's mass in proportion to the estimate within its interval), which undo most of the
    blur of the read intervals. ``below(x)`` / ``up_to(x)``: how many completions (fractions
    included) took less than ``x`` / at most ``x`` seconds.
    """

    def __init__(self, samples: list[Sample], width: float) -> None:
        samples = [(low, high) for low, high in samples if high <= MAX_AGE]  # bounds the bins too
        self.points = sorted(low for low, high in samples if high <= low)
        self.width = width
        intervals = [(low, high) for low, high in samples if high > low]
        bins = math.ceil(max((high for _, high in intervals), default=0.0) / width) + 1
        overlaps = [self._overlaps(low, high) for low, high in intervals]
        mass = [1.0] * bins
        for _ in range(1 + SHARPEN_ROUNDS):
            moved = [0.0] * bins
            for overlap in overlaps:
                total = sum(share * mass[j] for j, share in overlap)
                for j, share in overlap:
                    moved[j] += share * mass[j] / total if total > 0 else share
            mass = moved
        self.mass = mass
        self.cumulative = [0.0]
        for value in mass:
            self.cumulative.append(self.cumulative[-1] + value)
        self.breakpoints = sorted({j * width for j, value in enumerate(mass) if value > 0} | set(self.points))

    def _overlaps(self, low: float, high: float) -> list[tuple[int, float]]:
        first, last = int(low // self.width), int(high // self.width)
        return [
            (j, (min(high, (j + 1) * self.width) - max(low, j * self.width)) / (high - low))
            for j in range(first, last + 1)
            if min(high, (j + 1) * self.width) > max(low, j * self.width)
        ]

    def _spread(self, x: float) -> float:
        if x <= 0:
            return 0.0
        j = int(x // self.width)
        if j >= len(self.mass):
            return self.cumulative[-1]
        return self.cumulative[j] + self.mass[j] * (x - j * self.width) / self.width

    def below(self, x: float) -> float:
        return self._spread(x) + bisect.bisect_left(self.points, x)

    def up_to(self, x: float) -> float:
        return self._spread(x) + bisect.bisect_right(self.points, x)


#: How many standard deviations (Poisson) above the count of faster completions the rule allows for:
#: a handful of samples below a point may stand for many more generations.
CAUTION = 2.0


def _upper(count: float) -> float:
    """A cautious upper bound of the generations that ``count`` learned completions stand for (>= 1)."""
    return max(1.0, count + CAUTION * math.sqrt(count))


def _as_sample(sample: float | Sample) -> Sample:
    if isinstance(sample, tuple):
        low, high = float(sample[0]), float(sample[1])
        return low, max(low, high)
    return float(sample), float(sample)


def first_read_from_samples(
    samples: list[float] | list[Sample], poll_interval: float, *, tail_share: float = TAIL_SHARE
) -> float | None:
    """The schedule rule on its own: seconds after ``created`` before which reading is not worth it.

    With the first read at ``q`` seconds and then every ``poll_interval`` (``P``), a generation that
    takes ``d >= q`` is detected less than ``P`` late, as with fixed polling; one that takes
    ``d < q`` is detected ``q - d`` late. Fixed polling detects 5% of generations more than
    ``0.95 P`` late, so the p95 of the lag is no worse while ``F(q - 0.95 P) <= 0.05 F(q)``
    (``F``: the distribution of ``d``; the 5% of the generations after ``q`` that fixed polling would
    detect late are no longer late). The answer is the largest ``q`` (a breakpoint of the learned
    distribution plus ``0.95 P``) for which the samples satisfy that (the scan stops once more than
    5% of all samples are faster: no later ``q`` can); less than one generation seen below a point
    counts as one, so a few samples never allow a skip.

    :param samples: Completion times: seconds (known exactly) or ``(low, high)`` intervals, each
        counted as spread evenly over its interval; any order.
    :param poll_interval: Seconds between reads after the first.
    :param tail_share: The share ``0.05`` above.
    :return: ``q`` (>= 0), or ``None`` if the samples allow no skipped read.
    """
    if poll_interval <= 0 or not samples:
        return None
    spread = _Spread([_as_sample(sample) for sample in samples], BIN_SHARE * poll_interval)
    total = len(samples)
    span = P95_OF_INTERVAL * poll_interval
    best: float | None = None
    for point in spread.breakpoints:
        first = point + span
        faster = spread.below(point)  # took less than q - span: detected more than 0.95 P late
        if _upper(faster) <= tail_share * spread.up_to(first) + 1e-9:
            best = first
        elif faster > tail_share * total:  # no later first read can meet the rule
            break
    return None if best is None else max(0.0, best)


@dataclass(frozen=True)
class FirstRead:
    """When a wait reads its generation first: the estimate's advice for one wait.

    :param at_age: Read first at this age (seconds since ``created``), skipping the reads before;
        ``None``: at the normal first check (plus ``phase``).
    :param phase: Seconds to add to the normal first check (an exploring wait, see the module notes).
    :param learned_from: Completions of the key the advice rests on.
    """

    at_age: float | None = None
    phase: float = 0.0
    learned_from: int = 0

    @property
    def skips(self) -> bool:
        """Whether the wait skips reads on this advice (then its completion is not learned)."""
        return self.at_age is not None


def _quantile(ordered: list[float], share: float) -> float:
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


class CompletionTimes:
    """Completion times per :func:`schedule_key`, learned from the completions of this process's waits.

    :param min_samples: Learned completions a key needs before it has an estimate.
    :param max_samples: Learned completions kept per key (the newest).
    :param max_keys: Keys kept (least recently used forgotten first).
    :param explore_share: Share of waits told to read on the fixed schedule once an estimate exists.
    :param rng: Random source for the exploring waits (seed it for reproducible tests).
    """

    def __init__(
        self,
        *,
        min_samples: int = MIN_SAMPLES,
        max_samples: int = MAX_SAMPLES,
        max_keys: int = MAX_KEYS,
        explore_share: float = EXPLORE_SHARE,
        rng: random.Random | None = None,
    ) -> None:
        if min_samples < 1 or max_samples < min_samples or max_keys < 1:
            raise ValueError("need 1 <= min_samples <= max_samples and max_keys >= 1")
        if not 0.0 <= explore_share <= 1.0:
            raise ValueError(f"explore_share must be within [0, 1], got {explore_share!r}")
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.max_keys = max_keys
        self.explore_share = explore_share
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._samples: OrderedDict[str, deque[Sample]] = OrderedDict()
        self._sorted: dict[str, list[Sample]] = {}
        self._rules: dict[tuple[str, float], tuple[int, float | None]] = {}  # (completions seen, rule)
        self._seen: dict[str, int] = {}  # completions learned per key, ever

    def observe(
        self, key: str, last_unfinished: float | None, first_completed: float, *, skipped: bool = False
    ) -> None:
        """Learn one completion, seen between two reads (seconds since the generation's ``created``).

        :param key: :func:`schedule_key` of the generation.
        :param last_unfinished: Age at the last read that saw it unfinished; ``None`` if no read did
            (then it may have taken anything from zero).
        :param first_completed: Age at the first read that saw it ``completed``.
        :param skipped: The wait skipped reads on this estimate's advice: the completion is not
            learned (its early span was not read, see the module's notes).
        """
        if skipped:
            return
        high = max(0.0, float(first_completed))
        low = 0.0 if last_unfinished is None else float(last_unfinished)
        low = max(0.0, min(low, high))  # clocks may disagree: never past the completed read
        if not (math.isfinite(low) and math.isfinite(high)) or high > MAX_AGE:
            return
        with self._lock:
            samples = self._samples.get(key)
            if samples is None:
                samples = self._samples[key] = deque(maxlen=self.max_samples)
                while len(self._samples) > self.max_keys:
                    forgotten, _ = self._samples.popitem(last=False)
                    self._forget(forgotten)
            else:
                self._samples.move_to_end(key)
            samples.append((low, high))
            self._seen[key] = self._seen.get(key, 0) + 1
            self._sorted.pop(key, None)

    def _forget(self, key: str) -> None:
        self._sorted.pop(key, None)
        self._seen.pop(key, None)
        for cached in [cached for cached in self._rules if cached[0] == key]:
            del self._rules[cached]

    def samples(self, key: str) -> list[Sample]:
        """The learned completions of ``key`` as ``(low, high)`` intervals, sorted."""
        with self._lock:
            return list(self._ordered(key))

    def _ordered(self, key: str) -> list[Sample]:
        ordered = self._sorted.get(key)
        if ordered is None:
            samples = self._samples.get(key)
            if samples is None:  # nothing learned: nothing kept for it either
                return []
            ordered = self._sorted[key] = sorted(samples)
        return ordered

    def _rule(self, key: str, poll_interval: float) -> float | None:
        cached, seen = (key, poll_interval), self._seen.get(key, 0)
        entry = self._rules.get(cached)
        if entry is None or seen - entry[0] >= REFRESH_EVERY:
            entry = self._rules[cached] = (seen, first_read_from_samples(self._ordered(key), poll_interval))
        return entry[1]

    def first_read(self, key: str, poll_interval: float) -> FirstRead:
        """When one wait on such a generation reads first (see the module's notes).

        Cold start (fewer than ``min_samples`` completions of ``key``): the normal first check, the
        fixed schedule. Then: skip to :func:`first_read_from_samples`' age, or explore (a random
        phase after the normal first check) while the samples allow no skip and for
        ``explore_share`` of waits once they do.

        :param key: :func:`schedule_key` of the generation.
        :param poll_interval: Seconds between reads.
        """
        with self._lock:
            learned = len(self._samples.get(key, ()))
            if learned < self.min_samples:
                return FirstRead(learned_from=learned)
            after = self._rule(key, poll_interval)
            if after is None or self._rng.random() < self.explore_share:
                return FirstRead(phase=self._rng.uniform(0.0, poll_interval), learned_from=learned)
            return FirstRead(at_age=after, learned_from=learned)

    def first_read_after(self, key: str, poll_interval: float) -> float | None:
        """Seconds after ``created`` before which a read of such a generation is not worth doing.

        :meth:`first_read`'s ``at_age``: ``None`` to read at the normal first check (no estimate
        yet, the samples allow no skip, or an exploring wait).
        """
        return self.first_read(key, poll_interval).at_age

    def late_after(self, key: str) -> float | None:
        """Age (seconds since ``created``) from which a generation of ``key`` counts as late; ``None``: no estimate."""
        with self._lock:
            ordered = self._ordered(key)
            if len(ordered) < self.min_samples:
                return None
            return LATE_FACTOR * _quantile(sorted(high for _, high in ordered), LATE_QUANTILE)

    def late_backoff_delay(
        self, key: str, elapsed: float, poll_interval: float, *, allowed: bool, max_delay: float = LATE_MAX_DELAY
    ) -> float:
        """The delay until the next read of a generation ``elapsed`` seconds old.

        ``poll_interval``, unless the DAG author allowed backing off and the generation is late (see
        :meth:`late_after`): then the delay grows with the lateness, ``poll_interval * elapsed /
        late_after``, up to ``max_delay`` (never below ``poll_interval``).

        :param key: :func:`schedule_key` of the generation.
        :param elapsed: Seconds since the generation's ``created``.
        :param poll_interval: The wait's interval between reads.
        :param allowed: Whether the DAG author allows backing off (off: always ``poll_interval``).
        :param max_delay: The delay it backs off towards.
        """
        if not allowed or poll_interval >= max_delay:
            return poll_interval
        late_after = self.late_after(key)
        if late_after is None or late_after <= 0 or elapsed <= late_after:
            return poll_interval
        return min(max_delay, max(poll_interval, poll_interval * elapsed / late_after))

    def clear(self) -> None:
        """Forget everything learned."""
        with self._lock:
            self._samples.clear()
            self._sorted.clear()
            self._rules.clear()
            self._seen.clear()


#: The estimate of this process, shared by all its waits.
ESTIMATE = CompletionTimes()

__all__ = ["ESTIMATE", "CompletionTimes", "FirstRead", "Sample", "first_read_from_samples", "schedule_key"]
