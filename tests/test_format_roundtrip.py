"""Bit-exact round trips of the .dcz format, against dense numpy and hand-written references."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcompress.format import (VERSION, FormatError, LayerError, QuantizedLayer, decode, encode, file_size_breakdown,
                                 read, read_bytes, size_breakdown, write)
from deepcompress.format import bitstream, relindex

DOC = Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md"


def random_quantized(rng, shape, density, k, zero_run=0):
    """A dense weight array whose nonzeros are entries of a K-entry codebook, plus that codebook."""
    codebook = np.sort(rng.normal(size=k)).astype(np.float32)
    codebook[codebook == 0] = 0.5
    weight = np.where(rng.random(shape) < density, codebook[rng.integers(0, k, shape)], 0).astype(np.float32)
    if zero_run:
        weight.reshape(shape[0], -1)[:, : zero_run // shape[0]] = 0
    return weight, codebook


def lowest_version(layers) -> int:
    """The version a writer must write (docs/FORMAT.md section 11): 3 when a layer stores every position,
    else 2 when one stores f16 values, else 1."""
    if any(layer.nnz == layer.size for layer in layers):
        return 3
    return 2 if any(layer.value_dtype == "f16" for layer in layers) else 1


def roundtrip(layers, meta=None):
    blob = encode(layers, meta or {})
    out, meta_out = decode(blob)
    assert meta_out == (meta or {})
    assert encode(out, meta_out) == blob  # canonical: decode then encode gives the same bytes
    return out, blob


# --- bitstream and relative index -----------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 16), st.lists(st.integers(0, 2**16 - 1), max_size=50))
def test_bitstream_matches_bit_string(width, values):
    values = [v % (1 << width) for v in values]
    bits = "".join(format(v, f"0{width}b") for v in values)
    data = bitstream.pack(values, width)
    assert data == (int(bits, 2) << (-len(bits) % 8)).to_bytes(len(data), "big") if bits else data == b""
    assert bitstream.unpack(data, width, len(values)).tolist() == values


def reference_gaps(positions, gap_bits):
    esc, out, prev = (1 << gap_bits) - 1, [], -1
    for p in positions:
        run = p - prev - 1
        while run >= esc:
            out.append(esc)
            run -= esc
        out.append(run)
        prev = p
    return out


def test_paper_style_example():
    # 4-bit gaps: 20 zeros before a weight -> one filler (15 zeros) then gap 5.
    assert relindex.positions_to_gaps([0, 21, 22], 4).tolist() == [0, 15, 5, 0]
    assert relindex.gaps_to_positions([0, 15, 5, 0], 4, 23).tolist() == [0, 21, 22]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.sets(st.integers(0, 3000), max_size=60))
def test_gaps_match_reference_and_invert(gap_bits, positions):
    positions = sorted(positions)
    gaps = relindex.positions_to_gaps(positions, gap_bits)
    assert gaps.tolist() == reference_gaps(positions, gap_bits)
    assert relindex.gaps_to_positions(gaps, gap_bits, 3001).tolist() == positions


def test_trailing_filler_and_overrun_are_rejected():
    with pytest.raises(FormatError, match="ends with a filler"):
        relindex.gaps_to_positions([0, 15], 4, 100)
    with pytest.raises(FormatError, match="beyond"):
        relindex.gaps_to_positions([9], 4, 9)


# --- layers -----------------------------------------------------------------------------------------

def test_positions_are_csc_order():
    weight = np.array([[0, 1, 0], [2, 0, 3]], np.float32)
    layer = QuantizedLayer.from_dense("a", "fc", weight, [1, 2, 3])
    # columns in turn, rows ascending: (1,0)=2 at p=1, (0,1)=1 at p=2, (1,2)=3 at p=5
    assert layer.positions.tolist() == [1, 2, 5]
    assert layer.codebook[layer.indices].tolist() == [2, 1, 3]
    assert np.array_equal(layer.to_dense(), weight)


def test_from_dense_rejects_weights_off_the_codebook():
    with pytest.raises(ValueError, match="not exactly a codebook entry"):
        QuantizedLayer.from_dense("a", "fc", np.array([[0.5, 1.0]]), [1.0])


@pytest.mark.parametrize("kind,shape", [("fc", (30, 41)), ("conv", (6, 3, 5, 5)), ("fc", (1, 1)),
                                        ("conv", (2, 1, 1, 1))])
@pytest.mark.parametrize("density", [0.0, 0.02, 0.3, 1.0])
def test_roundtrip_densities(kind, shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    weight, codebook = random_quantized(rng, shape, density, 16)
    layer = QuantizedLayer.from_dense("w", kind, weight, codebook, bias=rng.normal(size=shape[0]), gap_bits=4)
    (out,), _ = roundtrip([layer])
    assert out.equals(layer)
    assert np.array_equal(out.to_dense(), weight)


@pytest.mark.parametrize("index_bits", range(1, 9))
def test_roundtrip_all_widths(index_bits):
    rng = np.random.default_rng(index_bits)
    for gap_bits in range(1, 9):
        k = int(rng.integers(1, (1 << index_bits) + 1))
        weight, codebook = random_quantized(rng, (17, 23), rng.choice([0.01, 0.1, 0.5]), k, zero_run=200)
        layer = QuantizedLayer.from_dense(f"l{gap_bits}", "fc", weight, codebook, index_bits=index_bits,
                                          gap_bits=gap_bits)
        (out,), _ = roundtrip([layer])
        assert out.equals(layer) and np.array_equal(out.to_dense(), weight)


def test_long_zero_runs_use_fillers():
    weight = np.zeros((50, 100), np.float32)
    weight[3, 0], weight[7, 99] = 1.0, -1.0  # CSC positions 3 and 99 * 50 + 7 = 4957
    layer = QuantizedLayer.from_dense("sparse", "fc", weight, [-1.0, 1.0], gap_bits=3)
    (out,), blob = roundtrip([layer])
    assert np.array_equal(out.to_dense(), weight)
    sizes = size_breakdown(blob).layers[0]
    assert sizes.fillers == (4957 - 3 - 1) // 7


def test_skewed_streams_are_huffman_coded_and_uniform_are_not():
    rng = np.random.default_rng(5)
    codebook = np.arange(1, 33, dtype=np.float32)
    skewed = np.where(rng.random((100, 100)) < 0.2, np.minimum(rng.geometric(0.5, (100, 100)), 32), 0)
    uniform = np.where(rng.random((100, 100)) < 0.2, rng.integers(1, 33, (100, 100)), 0)
    layers = [QuantizedLayer.from_dense("s", "fc", skewed, codebook, gap_bits=8),
              QuantizedLayer.from_dense("u", "fc", uniform, codebook, gap_bits=8)]
    out, blob = roundtrip(layers)
    sizes = size_breakdown(blob).layers
    assert sizes[0].index_huffman and sizes[0].index < sizes[0].index_raw
    assert not sizes[1].index_huffman and sizes[1].index == sizes[1].index_raw
    assert all(a.equals(b) for a, b in zip(out, layers))


def test_single_symbol_and_one_entry_codebooks():
    weight = np.zeros((40, 40), np.float32)
    weight[::3, ::2] = 0.25
    layer = QuantizedLayer.from_dense("one", "fc", weight, [0.25], gap_bits=2)
    (out,), _ = roundtrip([layer])
    assert np.array_equal(out.to_dense(), weight) and out.index_bits == 1


def test_stored_weights_may_decode_to_zero():
    # a stored entry is a position with a codebook index; the entry's value may be 0.0 or -0.0
    layer = QuantizedLayer("z", "fc", (2, 3), [0.0, -0.0, 1.5], [0, 2, 5], [0, 1, 2])
    (out,), _ = roundtrip([layer])
    assert out.nnz == 3 and out.positions.tolist() == [0, 2, 5] and out.indices.tolist() == [0, 1, 2]
    dense = out.to_dense()
    assert np.count_nonzero(dense) == 1 and np.signbit(dense[0, 1]) and not np.signbit(dense[0, 0])
    # from_dense stores the float32 nonzeros only: a weight equal to a 0.0 centroid is not stored ...
    weight = np.array([[0.0, 1.5], [-0.0, 1.5]], np.float32)
    assert QuantizedLayer.from_dense("z", "fc", weight, [0.0, 1.5]).positions.tolist() == [2, 3]
    # ... but float16 rounds a centroid with |x| <= 2**-25 to +-0 after the positions are chosen
    tiny = QuantizedLayer.from_dense("t", "fc", np.array([[2e-8, 0.0], [-1e-8, 0.5]]), [-1e-8, 2e-8, 0.5],
                                     value_dtype="f16")
    (out,), _ = roundtrip([tiny])
    assert out.nnz == 3 and out.codebook.tolist() == [0.0, 0.0, 0.5] and np.signbit(out.codebook[0])
    assert np.count_nonzero(out.to_dense()) == 1


def test_write_read_file_and_sizes_add_up(tmp_path):
    rng = np.random.default_rng(7)
    layers = []
    for name, kind, shape in [("conv1", "conv", (20, 1, 5, 5)), ("ip1", "fc", (500, 80)), ("ip2", "fc", (10, 500))]:
        weight, codebook = random_quantized(rng, shape, 0.1, 32)
        layers.append(QuantizedLayer.from_dense(name, kind, weight, codebook, bias=rng.normal(size=shape[0])))
    meta = {"model": "tiny", "input_shape": [1, 28, 28],
            "ops": [{"op": "conv", "layer": "conv1", "stride": 1, "padding": 0}, {"op": "relu"}]}
    path = tmp_path / "m.dcz"
    written = write(path, layers, meta)
    assert written == path.stat().st_size
    out, meta_out = read(path)
    assert meta_out == meta and all(a.equals(b) for a, b in zip(out, layers))
    assert read_bytes(path.read_bytes())[1] == meta
    report = file_size_breakdown(path)
    assert report.total == written
    assert report.file_header + sum(layer.total for layer in report.layers) == written
    for layer in report.layers:
        assert layer.total == layer.header + layer.codebook + layer.index + layer.gap + layer.bias
    assert json.loads(json.dumps(report.to_dict()))["total"] == written


def test_writer_rejects_bad_input():
    layer = QuantizedLayer.from_dense("a", "fc", np.ones((2, 2)), [1.0])
    with pytest.raises(ValueError, match="unique"):
        encode([layer, layer], {})
    with pytest.raises(TypeError):
        encode([layer], [1, 2])
    with pytest.raises(ValueError):
        encode([layer], {"x": float("nan")})
    with pytest.raises(ValueError):
        QuantizedLayer("b", "conv", (2, 2), [1.0], [0], [0])


def test_newer_version_and_wrong_magic():
    blob = bytearray(encode([], {}))
    blob[4:6] = (VERSION + 1).to_bytes(2, "little")
    with pytest.raises(FormatError, match=f"version {VERSION + 1} is newer than this reader supports \\({VERSION}\\)"):
        decode(bytes(blob))
    with pytest.raises(FormatError, match="not a .dcz file"):
        decode(b"PK\x03\x04" + bytes(blob[4:]))


# --- value dtypes: float32 (version 1) and float16 (version 2) ------------------------------------------

def f16(values):
    """float32 values rounded to float16 the way the writer does (nearest, ties to even), as float32."""
    return np.asarray(values, np.float32).astype(np.float16).astype(np.float32)


def version_of(blob) -> int:
    return int.from_bytes(blob[4:6], "little")


@pytest.mark.parametrize("kind,shape", [("fc", (30, 41)), ("conv", (6, 3, 5, 5)), ("fc", (1, 1))])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_f16_roundtrip_decodes_to_the_rounded_values_exactly(kind, shape, density):
    rng = np.random.default_rng(hash((shape, density, "f16")) % 2**32)
    weight, codebook = random_quantized(rng, shape, density, 16)
    bias = rng.normal(size=shape[0]).astype(np.float32)
    layer = QuantizedLayer.from_dense("w", kind, weight, codebook, bias=bias, gap_bits=4, value_dtype="f16")
    (out,), blob = roundtrip([layer])
    assert version_of(blob) == lowest_version([layer]) and out.value_dtype == "f16" and out.equals(layer)
    assert out.codebook.dtype == np.float32 and out.codebook.tobytes() == f16(codebook).tobytes()
    assert out.bias.dtype == np.float32 and out.bias.tobytes() == f16(bias).tobytes()
    rounded = np.where(weight != 0, f16(weight), 0)  # every stored weight is its codebook entry, rounded
    assert np.array_equal(out.to_dense(), rounded)
    full = QuantizedLayer.from_dense("w", kind, weight, codebook, bias=bias, gap_bits=4)
    f32_blob = encode([full], {})
    assert version_of(f32_blob) == lowest_version([full]) and len(f32_blob) - len(blob) == 2 * (16 + shape[0])


VALUES = st.floats(-7e4, 7e4, width=32)  # beyond float16's 65504 on purpose


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["f32", "f16"]), st.lists(VALUES, min_size=1, max_size=16), st.integers(1, 12),
       st.integers(1, 30), st.booleans(), st.data())
def test_random_values_roundtrip_in_either_dtype(value_dtype, codebook, rows, cols, with_bias, data):
    positions = sorted(data.draw(st.sets(st.integers(0, rows * cols - 1), max_size=40)))
    indices = data.draw(st.lists(st.integers(0, len(codebook) - 1), min_size=len(positions),
                                 max_size=len(positions)))
    bias = data.draw(st.lists(VALUES, min_size=rows, max_size=rows)) if with_bias else None
    stored = [np.float32(v) for v in codebook + (bias or [])]
    if value_dtype == "f16" and any(abs(v) >= 65520 for v in stored):  # would round to infinity
        with pytest.raises(LayerError, match="outside float16's range"):
            QuantizedLayer("l", "fc", (rows, cols), codebook, positions, indices, bias, value_dtype=value_dtype)
        return
    layer = QuantizedLayer("l", "fc", (rows, cols), codebook, positions, indices, bias, value_dtype=value_dtype)
    (out,), blob = roundtrip([layer])
    assert out.equals(layer) and version_of(blob) == lowest_version([layer])
    expect = f16 if value_dtype == "f16" else (lambda v: np.asarray(v, np.float32))
    assert out.codebook.tobytes() == expect(codebook).tobytes()
    assert (out.bias is None) == (bias is None) and (bias is None or out.bias.tobytes() == expect(bias).tobytes())


def test_all_f32_files_stay_version_1_and_one_f16_layer_makes_version_2():
    rng = np.random.default_rng(21)
    layers = [QuantizedLayer.from_dense(f"l{i}", "fc", *random_quantized(rng, (9, 13), 0.3, 8),
                                        bias=rng.normal(size=9)) for i in range(3)]
    blob = encode(layers, {})
    assert version_of(blob) == 1 and blob == encode(decode(blob)[0], {})
    layers[1] = QuantizedLayer(**{**vars(layers[1]), "value_dtype": "f16"})
    out, blob = roundtrip(layers)
    assert version_of(blob) == 2 and [layer.value_dtype for layer in out] == ["f32", "f16", "f32"]
    sizes = size_breakdown(blob).layers
    assert [s.values for s in sizes] == ["f32", "f16", "f32"]
    assert [(s.codebook, s.bias) for s in sizes] == [(32, 36), (16, 18), (32, 36)]
    assert sizes[1].dense_fp32 == sizes[0].dense_fp32  # ratios stay against dense float32


def test_f16_range_limits():
    weight = np.array([[1.0, 0.0]], np.float32)
    edge = QuantizedLayer.from_dense("a", "fc", weight * 65519, [65519.0], bias=[-65504.0], value_dtype="f16")
    assert edge.codebook.tolist() == [65504.0] and edge.bias.tolist() == [-65504.0]
    assert decode(encode([edge], {}))[0][0].equals(edge)
    for codebook, bias, field in [([65520.0], None, "codebook"), ([1.0], [-1e6], "bias")]:
        with pytest.raises(LayerError, match=f"{field} value .* outside float16's range"):
            QuantizedLayer.from_dense("a", "fc", weight * codebook[0], codebook, bias=bias, value_dtype="f16")
    tiny = QuantizedLayer.from_dense("a", "fc", weight * 1e-9, [1e-9], value_dtype="f16")
    assert tiny.codebook.tolist() == [0.0]  # underflow rounds to zero, as float16 arithmetic would
    with pytest.raises(LayerError, match="value_dtype 'bf16'"):
        QuantizedLayer.from_dense("a", "fc", weight, [1.0], value_dtype="bf16")
    with pytest.raises(LayerError, match="NaN or infinite"):
        QuantizedLayer.from_dense("a", "fc", weight, [1.0], bias=[np.inf], value_dtype="f16")


@pytest.mark.parametrize("special, field", [(0x7C00, "codebook"), (0xFC00, "codebook"), (0x7E00, "codebook"),
                                            (0x7C00, "bias"), (0x7E01, "bias")])
def test_f16_infinity_and_nan_are_rejected(special, field):
    layer = QuantizedLayer.from_dense("a", "fc", np.array([[0.5, 0.0], [0.0, 0.0]]), [0.5], bias=[1.0, 2.0],
                                      value_dtype="f16")
    blob = bytearray(encode([layer], {}))
    sizes = size_breakdown(bytes(blob)).layers[0]
    assert (sizes.codebook, sizes.bias) == (2, 4)
    # sections: codebook, index, gap, bias, each followed by a 4-byte CRC; the bias is last
    codebook_at = len(blob) - (sizes.codebook + sizes.index + sizes.gap + sizes.bias + 16)
    offset = codebook_at if field == "codebook" else len(blob) - 4 - sizes.bias
    assert blob[offset:offset + 2] == bytes.fromhex("0038" if field == "codebook" else "003c")  # 0.5, 1.0
    blob[offset:offset + 2] = special.to_bytes(2, "little")
    with pytest.raises(FormatError, match=f"layer 0 'a'.*{field} has a NaN or infinite"):
        decode(bytes(blob), verify_crc=False)
    with pytest.raises(FormatError, match="CRC32 mismatch"):
        decode(bytes(blob))


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FormatError, match="nope.dcz"):
        read(tmp_path / "nope.dcz")


def example_file(value_dtype: str = "f32") -> bytes:
    """The worked example of docs/FORMAT.md (version 1; version 2 with value_dtype "f16")."""
    weight = np.zeros((3, 8), np.float32)
    weight[0, 0], weight[2, 0], weight[1, 7] = 0.5, -0.25, 0.5
    layer = QuantizedLayer.from_dense("fc", "fc", weight, [-0.25, 0.5], bias=[0.0, 1.0, -1.0], gap_bits=3,
                                      value_dtype=value_dtype)
    return encode([layer], {"model": "example"})


@pytest.mark.parametrize("marker, value_dtype, size", [("example-hex", "f32", 126), ("example-hex-f16", "f16", 116)])
def test_doc_example_matches_encoder(marker, value_dtype, size):
    text = DOC.read_text()
    dump = text.split(f"<!-- {marker} -->")[1].split("```")[1]
    hex_bytes = "".join(re.findall(r"^[0-9a-f]{8}: ((?:[0-9a-f]{2} ?)+)", dump, re.M)).replace(" ", "")
    assert bytes.fromhex(hex_bytes) == example_file(value_dtype) and len(example_file(value_dtype)) == size


def test_conv_positions_follow_the_2d_view():
    rng = np.random.default_rng(11)
    weight, codebook = random_quantized(rng, (4, 3, 2, 2), 0.4, 8)
    layer = QuantizedLayer.from_dense("c", "conv", weight, codebook)
    view = weight.reshape(4, 12)
    cols, rows = np.nonzero(view.T)  # column-major scan of the (out, in*kh*kw) view
    assert layer.positions.tolist() == (cols * 4 + rows).tolist()


def test_format_package_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, deepcompress.format; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("value_dtype", ["f32", "f16"])
def test_a_layer_storing_every_position_has_no_gap_stream(value_dtype):
    rng = np.random.default_rng(5)
    weight, codebook = random_quantized(rng, (7, 9), 1.0, 16)
    weight[weight == 0] = codebook[codebook != 0][0]  # no stored zero weight: every position holds one
    layer = QuantizedLayer.from_dense("w", "fc", weight, codebook, gap_bits=1, value_dtype=value_dtype)
    pruned = dataclasses.replace(layer, positions=layer.positions[1:], indices=layer.indices[1:])
    (out,), blob = roundtrip([layer])
    assert out.equals(layer) and version_of(blob) == 3
    assert size_breakdown(blob).layers[0].gap == 0 < size_breakdown(encode([pruned], {})).layers[0].gap
    assert version_of(encode([pruned], {})) == (2 if value_dtype == "f16" else 1)  # no all-stored layer: as before


def test_an_all_stored_flag_must_agree_with_the_counts():
    layer = QuantizedLayer("w", "fc", (2, 2), [0.5], [0, 1, 2, 3], [0, 0, 0, 0])
    blob = bytearray(encode([layer], {}))
    rec_flags = blob.index(bytes([1, layer.gap_bits, 1, 8]))  # index bits, gap bits, f32, flags: all stored
    blob[rec_flags + 3] = 8 | 2  # claims a Huffman-coded gap stream too
    with pytest.raises(FormatError, match="all-stored layer"):
        decode(bytes(blob), verify_crc=False)
