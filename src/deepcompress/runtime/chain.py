"""The forward pass of a file whose ops form a chain (each reads only the one before), run without the
graph's bookkeeping, with each FC layer followed by a ReLU doing that ReLU in its own call (fused.py)."""

from __future__ import annotations

import numpy as np

from ..format import graph
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


def build_chain(ops: list, forward: graph.ForwardPass) -> Chain | None:
    """The Chain of `ops` (built from `forward`'s records), or None when some op reads anything other
    than the op before it (a DAG: the model runs it op by op)."""
    if any(list(src) != [i - 1 if i else graph.INPUT] for i, src in enumerate(forward.inputs)):
        return None
    steps, i = [], 0
    while i < len(ops):
        fuse = (isinstance(ops[i], Fc) and i + 1 < len(ops)
                and isinstance(forward.ops[i + 1], graph.Relu))
        steps.append(_fc_relu(ops[i]) if fuse else ops[i])
        i += 2 if fuse else 1
    return Chain(steps)
