"""Output-region (spatial) convolution: the tile geometry, the one-process version, and 4 real gloo ranks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcompress.errors import UserError
from deepcompress.parallel.launch import spawn
from deepcompress.parallel.spatial import (DistributedSpatialConv2d, area, conv_out_size, crop, intersect,
                                           plan_tiles, tiled_conv2d)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run fastest single-threaded, and the machine is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@st.composite
def conv_cases(draw):
    """A convolution geometry with a tile grid that fits its output."""
    h, w = draw(st.integers(3, 16)), draw(st.integers(3, 16))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ho, wo = (conv_out_size(n, *a) for n, a in zip((h, w), zip(k, s, p, d)))
    if ho < 1 or wo < 1:
        k, d = (1, 1), (1, 1)
        ho, wo = (conv_out_size(n, *a) for n, a in zip((h, w), zip(k, s, p, d)))
    grid = (draw(st.integers(1, min(ho, 4))), draw(st.integers(1, min(wo, 4))))
    return (h, w), k, s, p, d, grid


def _reference_and_tiled(x, w, b, s, p, d, grid, groups=1):
    ref = F.conv2d(x, w, b, s, p, d, groups)
    out = tiled_conv2d(x, w, b, s, p, d, groups, grid=grid)
    # Positive output gradients: the weight and bias gradients are sums without cancellation, so a
    # relative bound on them is meaningful in float32.
    g = torch.rand(ref.shape, generator=torch.Generator().manual_seed(2), dtype=ref.dtype)
    return ref, out, torch.autograd.grad(ref, (x, w, b), g), torch.autograd.grad(out, (x, w, b), g)


@settings(max_examples=150, deadline=None)
@given(conv_cases(), st.integers(0, 2**31 - 1))
def test_tiled_equals_conv2d_forward_and_backward(case, seed):
    (h, w_), k, s, p, d, grid = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, h, w_, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, *k, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    ref, out, g_ref, g_out = _reference_and_tiled(x, w, b, s, p, d, grid)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    for name, a, e in zip(("input", "weight", "bias"), g_out, g_ref):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-6, msg=lambda m: f"{name} gradient: {m}")


@pytest.mark.parametrize("k,s,p,grid,groups", [(3, 1, 1, (2, 2), 1), (5, 2, 2, (3, 2), 1), (4, 3, 0, (1, 3), 2)])
def test_tiled_float32_matches_within_summation_rounding(k, s, p, grid, groups):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 4, 13, 11, generator=gen, requires_grad=True)
    w = torch.rand(6, 4 // groups, k, k, generator=gen, requires_grad=True)
    b = torch.rand(6, generator=gen, requires_grad=True)
    ref, out, g_ref, g_out = _reference_and_tiled(x, w, b, s, p, 1, grid, groups)
    assert torch.equal(out, ref) or (out - ref).abs().max() <= 1e-6 * ref.abs().max()
    for a, e in zip(g_out, g_ref):  # tile by tile sums in another order: float32 rounding, a few 1e-7
        assert (a - e).abs().max() <= 4e-6 * e.abs().max()


@settings(max_examples=200, deadline=None)
@given(conv_cases())
def test_owned_tiles_partition_the_input_and_windows_cover_the_needs(case):
    hw, k, s, p, d, grid = case
    plan = plan_tiles(hw, k, s, p, d, grid)
    image = ((0, hw[0]), (0, hw[1]))
    assert sum(area(t.owned) for t in plan.tiles) == hw[0] * hw[1]
    for t in plan.tiles:
        for u in plan.tiles:
            assert t.rank == u.rank or intersect(t.owned, u.owned) is None
        # The window is exactly the image part of the needed rectangle, and the pieces sent to it fill it.
        assert t.window == intersect(t.needed, image) or area(intersect(t.needed, image)) == 0
        assert sum(area(plan.pieces_to(j, t.rank)) for j in range(len(plan.tiles))) == area(t.window)
    assert plan.output_hw == (plan.tiles[-1].out[0][1], plan.tiles[-1].out[1][1])


def test_halo_is_kernel_minus_one_wide_for_stride_one():
    # 3x3 'same' conv on 8x8 cut 2x2: each tile reads its 4x4 plus one row, one column and a corner.
    plan = plan_tiles((8, 8), 3, 1, 1, 1, (2, 2))
    assert [plan.halo_pixels(r) for r in range(4)] == [9, 9, 9, 9]
    assert plan.halo_bytes(0, channels=16, batch=2) == 9 * 16 * 2 * 4
    assert sorted(plan.neighbours(0)) == [1, 2, 3]
    # A 5x5 kernel without padding on a 1x4 strip: interior tiles read kernel-1 = 4 extra columns of 6
    # rows, two from each side; the end tiles read two.
    strip = plan_tiles((6, 20), 5, 1, 0, 1, (1, 4))
    assert [strip.halo_pixels(r) for r in range(4)] == [12, 24, 24, 12]


def test_grid_larger_than_output_is_refused():
    with pytest.raises(UserError, match="cannot cut"):
        plan_tiles((5, 5), 3, 1, 0, 1, (4, 1))


# Cases for the real multi-process run: (input hw, kernel, stride, padding, dilation, grid of 4 tiles).
DIST_CASES = [((9, 10), 3, 1, 1, 1, (2, 2)), ((12, 7), 5, 2, 2, 1, (4, 1)), ((8, 19), 4, 3, 0, 2, (1, 4)),
              ((3, 11), 3, 1, 1, 1, (2, 2))]


def _spatial_worker(rank, world, cases):
    for i, (hw, k, s, p, d, grid) in enumerate(cases):
        gen = torch.Generator().manual_seed(i)  # every rank builds the same full problem
        conv = torch.nn.Conv2d(3, 5, k, s, p, d).double()
        with torch.no_grad():
            for param in conv.parameters():
                param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64))
        x = torch.randn(2, 3, *hw, generator=gen, dtype=torch.float64, requires_grad=True)
        ref = conv(x)
        g = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
        gx, gw, gb = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)

        layer = DistributedSpatialConv2d(conv, hw, grid)
        owned = layer.owned_input(x.detach()).clone().requires_grad_(True)
        out = layer(owned)
        out.backward(crop(g, layer.tile.out))
        checks = {"forward": (out, crop(ref, layer.tile.out)), "input grad": (owned.grad, crop(gx, layer.tile.owned)),
                  "weight grad": (conv.weight.grad, gw), "bias grad": (conv.bias.grad, gb)}
        errors = {name: (a - e).abs().max().item() if a.numel() else 0.0 for name, (a, e) in checks.items()}
        bad = {n: e for n, e in errors.items() if not e <= 1e-6}
        assert not bad, f"rank {rank}, case {i} {cases[i]}: {bad}"


def test_four_gloo_ranks_equal_conv2d_forward_and_backward():
    spawn(_spatial_worker, (DIST_CASES,), workers=4, timeout_s=300)  # a hang guard, not a speed check
