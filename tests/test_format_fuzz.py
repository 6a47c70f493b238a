"""Hostile .dcz input: truncated, corrupted or crafted files must raise FormatError and nothing else."""

import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepcompress.format import FormatError, QuantizedLayer, decode, encode, size_breakdown
from deepcompress.format.manifest import HEADER, MAGIC, VERSION


def small_file() -> bytes:
    rng = np.random.default_rng(3)
    codebook = np.array([-0.5, 0.25, 1.0], np.float32)
    skewed = np.where(rng.random((9, 12)) < 0.4, codebook[np.minimum(rng.geometric(0.6, (9, 12)) - 1, 2)], 0)
    conv = np.where(rng.random((2, 2, 3, 3)) < 0.2, 1.0, 0).astype(np.float32)
    layers = [QuantizedLayer.from_dense("a", "fc", skewed, codebook, bias=np.arange(9), gap_bits=2),
              QuantizedLayer.from_dense("b", "conv", conv, codebook, gap_bits=5)]
    blob = encode(layers, {"ops": [{"op": "fc", "layer": "a"}]})
    return blob


SMALL = small_file()


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


def test_small_file_uses_huffman_somewhere():
    sizes = size_breakdown(SMALL).layers
    assert any(layer.index_huffman or layer.gap_huffman for layer in sizes)


def test_every_truncation_is_rejected():
    for end in range(len(SMALL)):
        assert_rejected(SMALL[:end])
        assert_rejected(SMALL[:end], verify_crc=False)
    with pytest.raises(FormatError):
        size_breakdown(SMALL[:-1])


def test_trailing_bytes_are_rejected():
    assert "unexpected bytes" in assert_rejected(SMALL + b"\0")


def test_every_single_byte_flip_is_caught_by_a_crc_or_a_check():
    for pos in range(len(SMALL)):
        blob = bytearray(SMALL)
        blob[pos] ^= 0x41
        assert_rejected(bytes(blob))
        check_rejected_or_valid(bytes(blob), verify_crc=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_mutations_without_crc_protection(edits):
    blob = bytearray(SMALL)
    for pos, xor in edits:
        blob[pos] ^= xor
    check_rejected_or_valid(bytes(blob), verify_crc=False)
    check_rejected_or_valid(bytes(blob))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_garbage(data):
    check_rejected_or_valid(data)
    check_rejected_or_valid(MAGIC + struct.pack("<H", VERSION) + data, verify_crc=False)


_, _, _, _, META_LEN, MANIFEST_LEN = struct.unpack_from(HEADER, SMALL)
FIELDS = 20 + META_LEN + 2 + 1 + 2 + 8  # first record's fields after name length, name "a", kind, rank, 2 dims


def patched(offset: int, fmt: str, value: int) -> bytes:
    """SMALL with one field replaced and the preamble CRC recomputed, so the edit reaches the checks."""
    blob = bytearray(SMALL)
    struct.pack_into(fmt, blob, offset, value)
    end = 20 + META_LEN + MANIFEST_LEN
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
