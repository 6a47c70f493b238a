"""The runtime benchmarks' timer: 'warm' is a callable's steady state, not its second call."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import runtime_methods as rm  # noqa: E402


class SlowToWarm:
    """A fake clock and a call that costs `cold` for its first `slow_calls` calls, then `steady` (what a
    layout did here after another method's cache flush: several slow calls, then its steady time)."""

    def __init__(self, slow_calls: int, cold: float, steady: float):
        self.now, self.calls = 0.0, 0
        self.slow_calls, self.cold, self.steady = slow_calls, cold, steady

    def clock(self) -> float:
        return self.now

    def __call__(self) -> None:
        self.calls += 1
        self.now += self.cold if self.calls <= self.slow_calls else self.steady


def test_warm_sample_is_the_steady_state_after_several_slow_calls():
    fake = SlowToWarm(slow_calls=8, cold=5e-4, steady=1e-4)  # one warm-up call would time 5e-4
    assert rm.Timer(clock=fake.clock).sample(fake, "warm") == pytest.approx(1e-4)
    assert fake.calls > 8


def test_every_method_gets_the_minimum_warm_up_however_slow_its_calls():
    fake = SlowToWarm(slow_calls=3, cold=1.0, steady=0.5)  # calls far beyond the warm-up time budget
    assert rm.Timer(clock=fake.clock).sample(fake, "warm") == pytest.approx(0.5)
    assert fake.calls == rm.WARMUP_MIN + 1


def test_cold_sample_flushes_then_times_one_call():
    fake = SlowToWarm(slow_calls=1, cold=5.0, steady=1.0)
    assert rm.Timer(clock=fake.clock).sample(fake, "cold") == 5.0 and fake.calls == 1
