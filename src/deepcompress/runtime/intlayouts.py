"""The layouts of a weight-shared layer for the int8/int16 modes, built once from a QuantizedLayer:
`INT_BUILDERS` maps a layout's name to its builder. The layouts live with their family:

- intdense.py: 'rows' and 'cols', and 'rows-stored' and 'cols-stored': every weight as coded vectors
  (intcodes.py: 4-bit codes, 4-bit codes with a mask, or the weights themselves); 'rows-packed': 6-bit codes.
- intcsc.py: 'csc' and 'csc-abs': only the nonzero weights, column by column.
- intblocks.py: 'blocks' and 'quads' (int8): the quantized weights in 64-row blocks.
- introwquads.py: 'rowquads' and 'panelquads' (int8, batches): each row's nonzero weights in quads.
intpack.py holds what they share (the 32-entry chunk padding, the batch step, aligned buffers).

`matvec(xq, acc, path)` sets acc[:rows] to the exact integer W xq; xq is the quantized input padded with
zeros to `padded_in` entries (see intkernels.py for the paths).
"""

from __future__ import annotations

from .intblocks import build_blocks, build_quads
from .intcsc import build_abs_csc, build_int_csc
from .intdense import build_cols, build_rows, build_rows_packed
from .introwquads import build_panelquads, build_rowquads

INT_BUILDERS = {"rows": build_rows, "rows-stored": lambda nz, precision: build_rows(nz, precision, True),
                "cols": build_cols, "cols-stored": lambda nz, precision: build_cols(nz, precision, True),
                "csc": build_int_csc, "csc-abs": build_abs_csc, "blocks": build_blocks,
                "quads": build_quads, "rowquads": build_rowquads, "panelquads": build_panelquads,
                "rows-packed": build_rows_packed}
