"""The runtime benchmarks' timer: 'warm' is a callable's steady state, not its second call."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import runtime_methods as rm  # noqa: E402


class SlowToWarm:
    """A fake clock and a call that costs `cold` for its first `slow_calls` calls after a flush, then 1
    (what a layout did here after another method's cache flush: several slow calls, then its steady time)."""

    def __init__(self, slow_calls: int, cold: float):
        self.now, self.calls, self.slow_calls, self.cold = 0.0, 0, slow_calls, cold

    def clock(self) -> float:
        return self.now

    def __call__(self) -> None:
        self.calls += 1
        self.now += self.cold if self.calls <= self.slow_calls else 1.0


def test_warm_sample_is_the_steady_state_after_several_slow_calls():
    fake = SlowToWarm(slow_calls=8, cold=1e-4)
    timer = rm.Timer(clock=fake.clock)
    assert timer.sample(fake, "warm") == 1.0
    assert fake.calls > 8


def test_warm_up_stops_after_its_time_budget_for_slow_calls():
    fake = SlowToWarm(slow_calls=10**9, cold=1.0)  # every call takes 1 s: one warm-up call, one timed
    timer = rm.Timer(clock=fake.clock)
    assert timer.sample(fake, "warm") == 1.0
    assert fake.calls == 2


def test_cold_sample_flushes_then_times_one_call():
    fake = SlowToWarm(slow_calls=1, cold=5.0)
    timer = rm.Timer(clock=fake.clock)
    assert timer.sample(fake, "cold") == 5.0 and fake.calls == 1
