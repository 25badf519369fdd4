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
The time it took is somewhere in that interval; the estimate keeps the lower end, so it never
overstates how long generations take (a skipped span is never longer than the data allow).

**Which completions are learned.** Only those of waits that read on the fixed schedule. A wait that
skipped reads on this estimate's advice sees its fast generations completed at its first read, with
no unfinished read after the first seconds: learning from it would put their completion at zero and
make the estimate collapse. So once an estimate exists, :meth:`CompletionTimes.first_read_after`
still answers ``None`` (fixed schedule) for a small random share of waits (:data:`EXPLORE_SHARE`),
which keep the estimate current.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
from collections import OrderedDict, deque

#: Below this many learned completions a key has no estimate: waits poll on the fixed schedule.
MIN_SAMPLES = 20
#: Learned completions kept per key (the newest).
MAX_SAMPLES = 256
#: Keys kept (the most recently used); the least recently used is forgotten first.
MAX_KEYS = 256
#: Fixed polling detects a completion more than this share of the interval late for 5% of
#: generations (its lag is about uniform over the interval): the p95 the schedule must not exceed.
P95_OF_INTERVAL = 0.95
#: The share of generations allowed to be detected later than ``P95_OF_INTERVAL * poll_interval``.
TAIL_SHARE = 0.05
#: Once a key has an estimate, this share of waits still reads on the fixed schedule (and is learned from).
EXPLORE_SHARE = 0.1
#: A generation counts as late once it is older than this multiple of the key's 99th percentile.
LATE_FACTOR = 1.5
#: The quantile :data:`LATE_FACTOR` multiplies.
LATE_QUANTILE = 0.99
#: The longest delay between reads of a late generation (the API advises reads every 30 to 60 s).
LATE_MAX_DELAY = 60.0

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


def first_read_from_samples(
    samples: list[float], poll_interval: float, *, tail_share: float = TAIL_SHARE
) -> float | None:
    """The schedule rule on its own: seconds after ``created`` before which reading is not worth it.

    With the first read at ``q`` seconds and then every ``poll_interval`` (``P``), a generation that
    takes ``d >= q`` is detected less than ``P`` late, as with fixed polling; one that takes
    ``d < q`` is detected ``q - d`` late. Fixed polling detects 5% of generations more than
    ``0.95 P`` late, so the p95 of the lag is no worse while ``F(q - 0.95 P) <= 0.05 F(q)``
    (``F``: the distribution of ``d``; the 5% of the generations after ``q`` that fixed polling would
    detect late are no longer late). The answer is the largest ``q`` (a sample plus ``0.95 P``) for
    which the samples satisfy that, scanning upwards and stopping at the first violation; a share of
    generations never seen below a point counts as one sample, so a few samples never allow a skip.

    :param samples: Seconds completions took (lower bounds), any order.
    :param poll_interval: Seconds between reads after the first.
    :param tail_share: The share ``0.05`` above.
    :return: ``q`` (>= 0), or ``None`` if the samples allow no skipped read.
    """
    if poll_interval <= 0 or not samples:
        return None
    ordered = sorted(samples)
    span = P95_OF_INTERVAL * poll_interval
    best: float | None = None
    previous: float | None = None
    for value in ordered:
        if value == previous:
            continue
        previous = value
        faster = bisect.bisect_left(ordered, value)  # took less than value: detected late if q = value + span
        by_first_read = bisect.bisect_right(ordered, value + span)
        if max(faster, 1) <= tail_share * by_first_read:
            best = value + span
        elif faster:
            break
    return None if best is None else max(0.0, best)


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
        self._samples: OrderedDict[str, deque[float]] = OrderedDict()
        self._sorted: dict[str, list[float]] = {}

    def observe(
        self, key: str, last_unfinished: float | None, first_completed: float, *, skipped: bool = False
    ) -> None:
        """Learn one completion, seen between two reads (seconds since the generation's ``created``).

        :param key: :func:`schedule_key` of the generation.
        :param last_unfinished: Age at the last read that saw it unfinished; ``None`` if no read did.
        :param first_completed: Age at the first read that saw it ``completed``.
        :param skipped: The wait skipped reads on this estimate's advice: the completion is not
            learned (its early span was not read, see the module's notes).
        """
        if skipped:
            return
        low = 0.0 if last_unfinished is None else last_unfinished
        low = max(0.0, min(low, first_completed))  # clocks may disagree: never past the completed read
        if not math.isfinite(low):
            return
        with self._lock:
            samples = self._samples.get(key)
            if samples is None:
                samples = self._samples[key] = deque(maxlen=self.max_samples)
                while len(self._samples) > self.max_keys:
                    forgotten, _ = self._samples.popitem(last=False)
                    self._sorted.pop(forgotten, None)
            else:
                self._samples.move_to_end(key)
            samples.append(low)
            self._sorted.pop(key, None)

    def samples(self, key: str) -> list[float]:
        """The learned completion times (lower bounds) of ``key``, sorted."""
        with self._lock:
            return list(self._ordered(key))

    def _ordered(self, key: str) -> list[float]:
        ordered = self._sorted.get(key)
        if ordered is None:
            ordered = self._sorted[key] = sorted(self._samples.get(key, ()))
        return ordered

    def first_read_after(self, key: str, poll_interval: float) -> float | None:
        """Seconds after ``created`` before which a read of such a generation is not worth doing.

        The wait reads first at that age, then every ``poll_interval`` as before (never more often).

        :param key: :func:`schedule_key` of the generation.
        :param poll_interval: Seconds between reads.
        :return: The age (>= 0) of the first read; ``None``: read on the fixed schedule (no estimate
            yet, the samples allow no skip, or this wait is one of the :data:`EXPLORE_SHARE` that keep
            the estimate current).
        """
        with self._lock:
            ordered = self._ordered(key)
            if len(ordered) < self.min_samples:
                return None
            if self._rng.random() < self.explore_share:
                return None
            return first_read_from_samples(ordered, poll_interval)

    def late_after(self, key: str) -> float | None:
        """Age (seconds since ``created``) from which a generation of ``key`` counts as late; ``None``: no estimate."""
        with self._lock:
            ordered = self._ordered(key)
            if len(ordered) < self.min_samples:
                return None
            return LATE_FACTOR * _quantile(ordered, LATE_QUANTILE)

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


#: The estimate of this process, shared by all its waits.
ESTIMATE = CompletionTimes()

__all__ = ["ESTIMATE", "CompletionTimes", "first_read_from_samples", "schedule_key"]
