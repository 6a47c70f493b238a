"""Model-parallel convolution by output region: the output map is cut into a grid of (y, x) tiles.

Each worker owns one tile of the output and the matching tile of the input. To compute its output tile
it needs a slightly larger input window: its own input tile plus a halo of rows and columns owned by
neighbours (kernel - 1 wide for stride 1; stride, padding and dilation change the window's edges).

Two executions of the same plan:
- `tiled_conv2d`: one process cuts the input into windows, convolves each and stitches the tiles; exact,
  differentiable, for checking the geometry.
- `DistributedSpatialConv2d`: one tile per torch.distributed rank; halos travel by point-to-point
  messages forward, halo gradients travel back to their owners, and weight gradients are all-reduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

Span = tuple[int, int]  # half-open [start, stop)
Rect = tuple[Span, Span]  # (rows, cols)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, str):
        raise UserError(f"padding {v!r}: give explicit integer padding for a spatial convolution")
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_out_size(n: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one axis."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _axis_plan(n, kernel, stride, padding, dilation, parts) -> tuple[list[Span], list[Span], list[Span]]:
    """Per part along one axis: output span, owned input span, needed input span (may leave [0, n))."""
    n_out = conv_out_size(n, kernel, stride, padding, dilation)
    if not 1 <= parts <= n_out:
        raise UserError(f"cannot cut an output of length {n_out} into {parts} tiles")
    cuts = [i * n_out // parts for i in range(parts + 1)]
    # Input rows are owned by the tile whose outputs they centre on, so halos split evenly both ways:
    # an interior tile of a stride-1 convolution reads (kernel - 1) extra rows in all.
    centre = dilation * (kernel - 1) // 2 - padding
    owned_cuts = [0] + [min(max(c * stride + centre, 0), n) for c in cuts[1:-1]] + [n]
    out = [(cuts[i], cuts[i + 1]) for i in range(parts)]
    owned = [(owned_cuts[i], owned_cuts[i + 1]) for i in range(parts)]
    needed = [(a * stride - padding, (b - 1) * stride - padding + dilation * (kernel - 1) + 1) for a, b in out]
    return out, owned, needed


def _clip(span: Span, n: int) -> Span:
    lo, hi = max(span[0], 0), min(span[1], n)
    return (lo, max(lo, hi))


def intersect(a: Rect, b: Rect) -> Rect | None:
    """The overlap of two rectangles, or None when it is empty."""
    rows = (max(a[0][0], b[0][0]), min(a[0][1], b[0][1]))
    cols = (max(a[1][0], b[1][0]), min(a[1][1], b[1][1]))
    return (rows, cols) if rows[0] < rows[1] and cols[0] < cols[1] else None


def area(rect: Rect | None) -> int:
    """Number of pixels in a rectangle (0 for None)."""
    return 0 if rect is None else (rect[0][1] - rect[0][0]) * (rect[1][1] - rect[1][0])


@dataclass(frozen=True)
class Tile:
    """One worker's share: its output rectangle, the input it owns, and the input window it reads."""

    rank: int
    out: Rect
    owned: Rect
    needed: Rect  # in input coordinates; parts outside the image are the convolution's zero padding
    window: Rect  # `needed` clipped to the image: what must actually be held in memory


@dataclass(frozen=True)
class SpatialPlan:
    """How a convolution over an (H, W) input is cut into a (rows, cols) grid of output tiles."""

    input_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    grid: tuple[int, int]
    tiles: tuple[Tile, ...]

    @property
    def output_hw(self) -> tuple[int, int]:
        """Height and width of the whole output map."""
        return tuple(conv_out_size(*a) for a in zip(self.input_hw, self.kernel, self.stride, self.padding,
                                                    self.dilation))

    def pieces_to(self, src: int, dst: int) -> Rect | None:
        """Input rectangle that rank `src` owns and rank `dst` reads (its halo share), or None."""
        return intersect(self.tiles[src].owned, self.tiles[dst].window)

    def halo_pixels(self, rank: int) -> int:
        """Input pixels per channel and sample that `rank` receives from other ranks in a forward pass."""
        return sum(area(self.pieces_to(j, rank)) for j in range(len(self.tiles)) if j != rank)

    def halo_bytes(self, rank: int, channels: int, batch: int = 1, itemsize: int = 4) -> int:
        """Bytes `rank` receives per forward pass (the backward pass sends the same amount back)."""
        return self.halo_pixels(rank) * channels * batch * itemsize

    def neighbours(self, rank: int) -> list[int]:
        """Ranks that `rank` exchanges halo pieces with (in either direction)."""
        return [j for j in range(len(self.tiles)) if j != rank
                and (self.pieces_to(j, rank) is not None or self.pieces_to(rank, j) is not None)]


def plan_tiles(input_hw, kernel, stride=1, padding=0, dilation=1, grid=(2, 2)) -> SpatialPlan:
    """Cut the output of a convolution over an `input_hw` map into a `grid` of (rows, cols) tiles.

    Ranks number the tiles row by row. Raises UserError if the output has fewer rows or columns than
    the grid asks for.
    """
    hw, k, s, p, d, g = (_pair(v) for v in (input_hw, kernel, stride, padding, dilation, grid))
    rows = _axis_plan(hw[0], k[0], s[0], p[0], d[0], g[0])
    cols = _axis_plan(hw[1], k[1], s[1], p[1], d[1], g[1])
    tiles = []
    for i in range(g[0]):
        for j in range(g[1]):
            needed = (rows[2][i], cols[2][j])
            window = (_clip(needed[0], hw[0]), _clip(needed[1], hw[1]))
            tiles.append(Tile(len(tiles), (rows[0][i], cols[0][j]), (rows[1][i], cols[1][j]), needed, window))
    return SpatialPlan(hw, k, s, p, d, g, tuple(tiles))


def crop(x: torch.Tensor, rect: Rect, origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The part of an (N, C, h, w) tensor covering `rect`, where x's top-left pixel sits at `origin`."""
    (r0, r1), (c0, c1) = rect
    return x[..., r0 - origin[0] : r1 - origin[0], c0 - origin[1] : c1 - origin[1]]


def conv_window(window: torch.Tensor, tile: Tile, weight, bias, plan: SpatialPlan, groups: int = 1):
    """One tile's output from the input held over its window (zero padding added where it leaves the image)."""
    pads = []
    for (n0, n1), (w0, w1) in zip(reversed(tile.needed), reversed(tile.window)):
        # A window wholly inside the padding is empty; all of its needed length is then zeros.
        before = min(max(w0 - n0, 0), n1 - n0)
        pads += [before, (n1 - n0) - (w1 - w0) - before]
    return F.conv2d(F.pad(window, pads), weight, bias, plan.stride, 0, plan.dilation, groups)


def tiled_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                 padding=0, dilation=1, groups: int = 1, grid=(2, 2)) -> torch.Tensor:
    """F.conv2d computed tile by tile over a `grid` of output regions and stitched; differentiable."""
    plan = plan_tiles(x.shape[-2:], weight.shape[-2:], stride, padding, dilation, grid)
    outs = [conv_window(crop(x, t.window), t, weight, bias, plan, groups) for t in plan.tiles]
    rows = [torch.cat(outs[r * plan.grid[1] : (r + 1) * plan.grid[1]], dim=-1) for r in range(plan.grid[0])]
    return torch.cat(rows, dim=-2)


def _origin(rect: Rect) -> tuple[int, int]:
    return rect[0][0], rect[1][0]


def _redistribute(plan: SpatialPlan, rank: int, source: torch.Tensor, source_rect: Rect, target_rect: Rect,
                  transpose: bool, group) -> torch.Tensor:
    """Owned tile -> window (halo pieces arrive from their owners), or with `transpose` the reverse:
    window gradient -> owned gradient (halo gradients go back to their owners, who sum them in)."""
    target = source.new_zeros((*source.shape[:-2], *(hi - lo for lo, hi in target_rect)))
    mine = intersect(source_rect, target_rect)
    if mine is not None:
        crop(target, mine, _origin(target_rect)).copy_(crop(source, mine, _origin(source_rect)))
    requests, arrivals = [], []
    for peer in range(len(plan.tiles)):
        if peer == rank:
            continue
        send, recv = plan.pieces_to(rank, peer), plan.pieces_to(peer, rank)
        if transpose:  # what forward received now goes back; what it sent comes back
            send, recv = recv, send
        if send is not None:
            requests.append(dist.isend(crop(source, send, _origin(source_rect)).contiguous(), dst=peer, group=group))
        if recv is not None:
            buf = source.new_empty((*source.shape[:-2], *(hi - lo for lo, hi in recv)))
            requests.append(dist.irecv(buf, src=peer, group=group))
            arrivals.append((recv, buf))
    for req in requests:
        req.wait()
    for rect, buf in arrivals:
        view = crop(target, rect, _origin(target_rect))
        view.add_(buf) if transpose else view.copy_(buf)
    return target


class _HaloExchange(torch.autograd.Function):
    """Owned input tile -> input window (halo filled in by neighbours); backward returns halo gradients."""

    @staticmethod
    def forward(ctx, owned: torch.Tensor, plan: SpatialPlan, rank: int, group):
        ctx.plan, ctx.rank, ctx.group = plan, rank, group
        tile = plan.tiles[rank]
        return _redistribute(plan, rank, owned, tile.owned, tile.window, False, group)

    @staticmethod
    def backward(ctx, grad_window: torch.Tensor):
        tile = ctx.plan.tiles[ctx.rank]
        grad_owned = _redistribute(ctx.plan, ctx.rank, grad_window, tile.window, tile.owned, True, ctx.group)
        return grad_owned, None, None, None


class _SumGradients(torch.autograd.Function):
    """Identity forward; backward sums the gradient over all ranks (weights are shared by every tile)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group):
        ctx.group = group
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


class DistributedSpatialConv2d(nn.Module):
    """A Conv2d whose output is cut into one tile per rank of a torch.distributed group.

    forward(owned) takes this rank's owned input tile (see `owned_input`) and returns its output tile;
    backward gives this rank's owned-input gradient and the full (all-reduced) weight and bias gradients.
    Every rank must hold the same weights and call forward and backward together.
    """

    def __init__(self, conv: nn.Conv2d, input_hw, grid, group=None):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise UserError(f"spatial convolution supports zero padding only, not {conv.padding_mode!r}")
        self.conv, self.group = conv, group
        self.plan = plan_tiles(input_hw, conv.kernel_size, conv.stride, conv.padding, conv.dilation, grid)
        world = dist.get_world_size(group)
        if world != len(self.plan.tiles):
            raise UserError(f"a {grid[0]}x{grid[1]} grid needs {len(self.plan.tiles)} ranks, group has {world}")
        self.rank = dist.get_rank(group)

    @property
    def tile(self) -> Tile:
        """This rank's tile."""
        return self.plan.tiles[self.rank]

    def owned_input(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's owned tile of a whole input map (for callers that hold the whole map)."""
        return crop(x, self.tile.owned)

    def forward(self, owned: torch.Tensor) -> torch.Tensor:
        """This rank's output tile."""
        window = _HaloExchange.apply(owned, self.plan, self.rank, self.group)
        weight = _SumGradients.apply(self.conv.weight, self.group)
        bias = None if self.conv.bias is None else _SumGradients.apply(self.conv.bias, self.group)
        return conv_window(window, self.tile, weight, bias, self.plan, self.conv.groups)
