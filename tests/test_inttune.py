"""The int layout tuner (runtime/inttune.py): its shortlist, its probe input, its timing of candidates in
their steady state, and IntLinear keeping the measured-fastest layout."""

from __future__ import annotations

import numpy as np
import pytest

from deepcompress.runtime import inttune
from deepcompress.runtime.int_fc import IntLinear
from deepcompress.runtime.quantize import reference_forward

from test_runtime_int import layer


def test_tuner_shortlist_and_probe_input():
    assert inttune.shortlist({"a": 100.0, "b": 149.0, "c": 151.0}) == ["a", "b"]
    assert inttune.shortlist({"a": 10.0, "b": 11.0, "c": 12.0, "d": 13.0, "e": 90.0}) == ["a", "b", "c"]
    x = inttune.probe_input(200, 0.35, 3)
    assert x.shape == (3, 200) and x.dtype == np.float32 and ((x > 0).sum(axis=1) == 70).all() and (x >= 0).all()
    assert (inttune.probe_input(50, None, 1000) > 0).all() and inttune.probe_input(50, None, 1000).shape == (64, 50)


@pytest.mark.parametrize("batch", [1, 40])
def test_auto_layout_times_the_shortlist_and_keeps_the_fastest(batch, monkeypatch):
    """With several layouts predicted close, 'auto' builds and times each (inttune) and keeps the one
    measured fastest; the layer's outputs are the reference's whichever it keeps. tune=False keeps the
    cost model's own pick untimed."""
    rng = np.random.default_rng(batch)
    nz = layer(rng, (130, 300), 0.1, "k16")
    bias = rng.standard_normal(130).astype(np.float32)
    x = np.maximum(rng.standard_normal((batch, 300)), 0).astype(np.float32)
    monkeypatch.setattr(inttune, "SHORTLIST_RATIO", 1e9)  # every layout is "close": all three timed
    fc = IntLinear(nz, bias, "int8", "auto", 0.5, batch=batch)
    assert len(fc.measured_us) == inttune.SHORTLIST_MAX
    assert fc.layout.kind == min(fc.measured_us, key=fc.measured_us.get)
    assert set(fc.measured_us) == set(sorted(fc.predicted_ns, key=fc.predicted_ns.get)[:inttune.SHORTLIST_MAX])
    assert "timed" in fc.why and np.array_equal(fc(x), reference_forward(nz, bias, x, "int8"))
    untimed = IntLinear(nz, bias, "int8", "auto", 0.5, batch=batch, tune=False)
    assert untimed.measured_us == {} and untimed.layout.kind == min(untimed.predicted_ns, key=untimed.predicted_ns.get)


def test_tuner_times_each_candidate_in_its_steady_state(monkeypatch):
    """Each timed call follows WARM_CALLS untimed calls of the same candidate, in rounds: a layout slow
    only right after another one (10 us) but fast in its steady state (1 us) beats one always at 2 us;
    a candidate whose calls take longer than WARM_UNTIL_S gets no warm-up calls after its first round."""
    clock, calls = [0.0], []

    def candidate(name, cold, warm):
        def call(_x):
            clock[0] += warm if calls and calls[-1] == name else cold
            calls.append(name)
        return call

    monkeypatch.setattr(inttune, "CLOCK", lambda: clock[0])
    cands = {"streams": candidate("streams", 1e-5, 1e-6), "steady": candidate("steady", 2e-6, 2e-6)}
    best, medians = inttune.fastest(cands, np.zeros((1, 4), np.float32), calls=3)
    assert best == "streams" and medians == pytest.approx({"streams": 1.0, "steady": 2.0})
    per_round = ["streams"] * (inttune.WARM_CALLS + 1) + ["steady"] * (inttune.WARM_CALLS + 1)
    assert calls == per_round * 3
    calls.clear()
    inttune.fastest({"long": candidate("long", 1.0, 1.0)}, np.zeros((1, 4), np.float32), calls=3)
    assert calls == ["long"] * (inttune.WARM_CALLS + 1 + 2)  # warm-up in the first round only
