"""Hostile .dcz input: truncated, corrupted or crafted files must raise FormatError and nothing else."""

import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepcompress.format import FormatError, QuantizedLayer, decode, encode, size_breakdown
from deepcompress.format.manifest import HEADER, MAGIC, VERSION, WEIGHTS_FLOOR, WEIGHTS_PER_BYTE_LIMIT, parse_preamble


def small_file(values: str = "f32") -> bytes:
    """A version-1 file (float32 values), or version 2 with values="f16"."""
    rng = np.random.default_rng(3)
    codebook = np.array([-0.5, 0.25, 1.0], np.float32)
    skewed = np.where(rng.random((9, 12)) < 0.4, codebook[np.minimum(rng.geometric(0.6, (9, 12)) - 1, 2)], 0)
    conv = np.where(rng.random((2, 2, 3, 3)) < 0.2, 1.0, 0).astype(np.float32)
    layers = [QuantizedLayer.from_dense("a", "fc", skewed, codebook, bias=np.arange(9), gap_bits=2, value_dtype=values),
              QuantizedLayer.from_dense("b", "conv", conv, codebook, gap_bits=5, value_dtype=values)]
    blob = encode(layers, {"ops": [{"op": "fc", "layer": "a"}]})
    return blob


SMALL = small_file()
SMALL16 = small_file("f16")
FILES = pytest.mark.parametrize("blob", [SMALL, SMALL16], ids=["v1-f32", "v2-f16"])


def check_rejected_or_valid(blob, **kw):
    """Decoding either succeeds or raises FormatError from an explicit check (never a stray exception)."""
    for parse in (lambda b: decode(b, **kw), size_breakdown) if not kw else (lambda b: decode(b, **kw),):
        try:
            parse(blob)
        except FormatError as err:
            assert "uncaught" not in str(err), str(err)
            assert str(err)


def assert_rejected(blob, **kw):
    with pytest.raises(FormatError) as info:
        decode(blob, **kw)
    assert "uncaught" not in str(info.value), str(info.value)
    return str(info.value)


@FILES
def test_small_files_use_huffman_somewhere(blob):
    sizes = size_breakdown(blob).layers
    assert any(layer.index_huffman or layer.gap_huffman for layer in sizes)


def test_small_files_are_version_1_and_2():
    assert struct.unpack_from("<H", SMALL, 4) == (1,) and struct.unpack_from("<H", SMALL16, 4) == (2,)
    assert len(SMALL) - len(SMALL16) == 2 * (3 + 9 + 3)  # two 3-entry codebooks and a 9-value bias, 2 bytes less each
    (a16, b16), _ = decode(SMALL16)
    assert (a16.value_dtype, b16.value_dtype) == ("f16", "f16")
    exact = [layer.to_dense().tolist() for layer in decode(SMALL)[0]]  # its values are exact in float16
    assert exact == [a16.to_dense().tolist(), b16.to_dense().tolist()]


@FILES
def test_every_truncation_is_rejected(blob):
    for end in range(len(blob)):
        assert_rejected(blob[:end])
        assert_rejected(blob[:end], verify_crc=False)
    with pytest.raises(FormatError):
        size_breakdown(blob[:-1])


@FILES
def test_trailing_bytes_are_rejected(blob):
    assert "unexpected bytes" in assert_rejected(blob + b"\0")


@FILES
def test_every_single_byte_flip_is_caught_by_a_crc_or_a_check(blob):
    for pos in range(len(blob)):
        flipped = bytearray(blob)
        flipped[pos] ^= 0x41
        assert_rejected(bytes(flipped))
        check_rejected_or_valid(bytes(flipped), verify_crc=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([SMALL, SMALL16]), st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)),
                                                   min_size=1, max_size=6))
def test_mutations_without_crc_protection(original, edits):
    blob = bytearray(original)
    for pos, xor in edits:
        blob[pos % len(blob)] ^= xor
    check_rejected_or_valid(bytes(blob), verify_crc=False)
    check_rejected_or_valid(bytes(blob))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(range(1, VERSION + 1)))
def test_random_garbage(data, version):
    check_rejected_or_valid(data)
    check_rejected_or_valid(MAGIC + struct.pack("<H", version) + data, verify_crc=False)


_, _, _, _, META_LEN, MANIFEST_LEN = struct.unpack_from(HEADER, SMALL)
FIELDS = 20 + META_LEN + 2 + 1 + 2 + 8  # first record's fields after name length, name "a", kind, rank, 2 dims


def patched(offset: int, fmt: str, value: int, original: bytes = SMALL) -> bytes:
    """A small file with one field replaced and the preamble CRC recomputed, so the edit reaches the checks."""
    blob = bytearray(original)
    struct.pack_into(fmt, blob, offset, value)
    *_, meta_len, manifest_len = struct.unpack_from(HEADER, blob)
    end = 20 + meta_len + manifest_len
    struct.pack_into("<I", blob, end, zlib.crc32(bytes(blob[:end])))
    return bytes(blob)


def test_huge_claimed_lengths_fail_fast():
    start = time.perf_counter()
    header = struct.pack(HEADER, MAGIC, VERSION, 0, 2**32 - 1, 2**32 - 1, 2**32 - 1)
    assert "only" in assert_rejected(header)
    for offset, value, message in [(FIELDS + 6, 2**32 - 1, "entry counts"),       # nonzeros
                                   (FIELDS + 10, 2**32 - 1, "entry counts"),      # entries
                                   (FIELDS + 18, 2**31, "index stream"),          # index stream length
                                   (20 + META_LEN + 5, 2**31, "weights"),         # shape[0]
                                   (20 + META_LEN + 9, 2**31, "weights")]:        # shape[1]
        sealed = patched(offset, "<I", value)
        assert message in assert_rejected(sealed)
        assert message in assert_rejected(sealed, verify_crc=False)
    assert time.perf_counter() - start < 2


def test_crafted_fields_are_checked_and_located():
    nnz, entries = struct.unpack_from("<II", SMALL, FIELDS + 6)
    flags = SMALL[FIELDS + 3]
    for offset, fmt, value, message in [
            (FIELDS + 6, "<I", nnz - 1, "real entries"), (FIELDS + 10, "<I", entries + 1, "gap stream"),
            (FIELDS + 10, "<I", entries - 1, "gap stream"), (FIELDS + 4, "<H", 2, "codebook length"),
            (FIELDS, "<B", 9, "index bits"), (FIELDS + 1, "<B", 0, "gap bits"), (FIELDS + 2, "<B", 2, "dtype"),
            (FIELDS + 3, "<B", 8, "flags"), (FIELDS + 3, "<B", flags ^ 1, "index stream"),
            (FIELDS + 3, "<B", flags ^ 2, "gap stream"),
            (20 + META_LEN + 3, "<B", 1, "rank")]:
        message_got = assert_rejected(patched(offset, fmt, value), verify_crc=False)
        assert "layer 0 'a'" in message_got and message in message_got, message_got


def test_value_dtype_must_suit_the_file_version():
    dtype_at = FIELDS + 2
    assert SMALL[dtype_at] == 1 and SMALL16[dtype_at] == 2
    for original, value, message in [
            (SMALL, 2, "value dtype: expected 1 (f32) in a version-1 file, got 2"),
            (SMALL16, 3, "value dtype: expected 1 (f32) or 2 (f16) in a version-2 file, got 3"),
            (SMALL16, 0, "value dtype"),
            (SMALL16, 1, "codebook length: expected 12 bytes, got 6")]:  # f32 needs 4 bytes a value
        for verify_crc in (True, False):
            got = assert_rejected(patched(dtype_at, "<B", value, original), verify_crc=verify_crc)
            assert "layer 0 'a'" in got and message in got, got
    # a version-2 file relabelled version 1 is refused by its float16 layers; version 3 by the reader
    assert "in a version-1 file" in assert_rejected(patched(4, "<H", 1, SMALL16))
    newer = f"version {VERSION + 1} is newer than this reader supports ({VERSION})"
    assert newer in assert_rejected(patched(4, "<H", VERSION + 1, SMALL16))
    assert "version 0 is not valid" in assert_rejected(patched(4, "<H", 0, SMALL))


def test_huffman_table_padding_nibble_must_be_zero():
    # a 3-entry codebook: the table is 3 lengths of 4 bits, so its second byte ends in 4 padding bits
    weight = np.zeros((8, 8), np.float32)
    weight.flat[:32] = [0.5] * 28 + [-1.0, -1.0, 2.0, 2.0]
    blob = bytearray(encode([QuantizedLayer.from_dense("odd", "fc", weight, [0.5, -1.0, 2.0])], {}))
    assert size_breakdown(bytes(blob)).layers[0].index_huffman
    preamble, cur = parse_preamble(bytes(blob))
    codebook_len, index_len = preamble.records[0].section_lengths[:2]
    table_at = cur.pos + codebook_len + 4
    assert blob[table_at + 1] & 0x0F == 0
    blob[table_at + 1] |= 0x08
    struct.pack_into("<I", blob, table_at + index_len, zlib.crc32(blob[table_at: table_at + index_len]))
    message = assert_rejected(bytes(blob))
    assert message == "layer 0 'odd': index stream: Huffman code table: the 4 padding bits at the end are not zero"


def zero_layer(n: int) -> QuantizedLayer:
    """An all-zero layer of n weights: its encoding costs the same few bytes whatever n is."""
    return QuantizedLayer("zero", "fc", (1, n), [], [], [])


def test_weight_limit_is_exactly_2048_a_byte_above_the_floor():
    meta = {"pad": "x" * 40_000}  # makes 2048 * file bytes larger than the 2**26 floor
    size = len(encode([zero_layer(1)], meta))  # the shape is a fixed-width field: the size does not depend on n
    limit = WEIGHTS_PER_BYTE_LIMIT * size
    assert WEIGHTS_PER_BYTE_LIMIT == 2048 and limit > WEIGHTS_FLOOR
    at_limit = encode([zero_layer(limit)], meta)
    assert len(at_limit) == size and decode(at_limit)[0][0].size == limit
    with pytest.raises(ValueError, match="readers' limit"):
        encode([zero_layer(limit + 1)], meta)
    *_, meta_len, _ = struct.unpack_from(HEADER, at_limit)
    shape_at = 20 + meta_len + 2 + len("zero") + 2 + 4  # shape[1] of the only record
    assert struct.unpack_from("<I", at_limit, shape_at) == (limit,)
    assert "more than this reader accepts" in assert_rejected(patched(shape_at, "<I", limit + 1, at_limit))


def test_weight_limit_admits_the_densest_encoding():
    # one weight at the very end: every zero before it is a Huffman-coded filler, 1 bit per 255 zeros
    n = 2 * WEIGHTS_FLOOR
    layer = QuantizedLayer("dense", "fc", (1, n), [1.0], [n - 1], [0], gap_bits=8, value_dtype="f16")
    blob = encode([layer], {})
    assert 2000 < n / len(blob) <= 2040 < WEIGHTS_PER_BYTE_LIMIT
    assert decode(blob)[0][0].equals(layer)


def test_weight_limit_admits_sparse_layers_and_an_all_zero_layer():
    rng = np.random.default_rng(5)
    rows, cols = 4096, WEIGHTS_FLOOR // 4096 + 64  # beyond the floor, so the per-byte rule decides
    positions = np.cumsum(rng.geometric(0.01, size=rows * cols // 99)) - 1  # 99% sparse
    positions = positions[positions < rows * cols]
    sparse = QuantizedLayer("sparse", "fc", (rows, cols), np.linspace(-1, 1, 16), positions,
                            rng.integers(0, 16, positions.size), gap_bits=8)
    ninety = QuantizedLayer.from_dense("ninety", "fc", np.where(rng.random((300, 400)) < 0.1, 0.5, 0), [0.5])
    layers = [sparse, ninety, zero_layer(10**6)]
    blob = encode(layers, {})
    assert sum(layer.size for layer in layers) / len(blob) < WEIGHTS_PER_BYTE_LIMIT / 16
    assert all(a.equals(b) for a, b in zip(decode(blob)[0], layers))
