"""The forward pass of a file whose ops form a chain (each reads only the one before), run without the
graph's bookkeeping: each FC layer followed by a ReLU does that ReLU in its own call (fused.py), and
consecutive FC layers run at batch 1 as one compiled call (compiled.py)."""

from __future__ import annotations

import numpy as np

from ..format import graph
from .compiled import fc_run
from .ops import Fc


class Chain:
    """The ops of a chain, an FC op and the Relu after it as one step; call it on a prepared batch."""

    def __init__(self, steps: list):
        self.steps = steps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The last op's output for the model's input batch x."""
        for step in self.steps:
            x = step(x)
        return x


def _fc_relu(fc: Fc):
    return lambda x: fc(x, relu=True)


def _fc_steps(fcs: list, relus: list) -> list:
    """Steps for consecutive FC ops: one compiled call at batch 1 where the layers have one."""
    run = fc_run(fcs, relus)
    if run is not None:
        return [run]
    return [_fc_relu(fc) if relu else fc for fc, relu in zip(fcs, relus)]


def build_chain(ops: list, forward: graph.ForwardPass) -> Chain | None:
    """The Chain of `ops` (built from `forward`'s records), or None when some op reads anything other
    than the op before it (a DAG: the model runs it op by op)."""
    if any(list(src) != [i - 1 if i else graph.INPUT] for i, src in enumerate(forward.inputs)):
        return None
    steps, fcs, relus, i = [], [], [], 0
    while i < len(ops):
        if not isinstance(ops[i], Fc):
            if fcs:
                steps += _fc_steps(fcs, relus)
                fcs, relus = [], []
            steps.append(ops[i])
            i += 1
            continue
        relu = i + 1 < len(ops) and isinstance(forward.ops[i + 1], graph.Relu)
        fcs.append(ops[i])
        relus.append(relu)
        i += 2 if relu else 1
    if fcs:
        steps += _fc_steps(fcs, relus)
    return Chain(steps)
