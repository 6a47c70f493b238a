"""Canonical length-limited Huffman codes, checked against closed forms and brute force."""

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcompress.format import FormatError, huffman


def plain_huffman(freqs):
    """(cost in bits, longest code) of an unrestricted Huffman code, by the textbook heap merge."""
    heap = [(f, 0) for f in freqs if f > 0]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        (fa, da), (fb, db) = heapq.heappop(heap), heapq.heappop(heap)
        cost += fa + fb
        heapq.heappush(heap, (fa + fb, max(da, db) + 1))
    return cost, heap[0][1]


def brute_force_cost(freqs, max_len):
    """Cheapest prefix code with every length in 1..max_len, by enumerating all length vectors."""
    best = None
    for lengths in itertools.product(range(1, max_len + 1), repeat=len(freqs)):
        if sum(2.0 ** -l for l in lengths) <= 1:
            cost = sum(f * l for f, l in zip(freqs, lengths))
            best = cost if best is None else min(best, cost)
    return best


def test_dyadic_distribution_gets_minus_log2_lengths():
    lengths = huffman.code_lengths([8, 4, 2, 1, 1, 0])
    assert lengths.tolist() == [1, 2, 3, 4, 4, 0]


def test_rfc1951_canonical_example():
    # RFC 1951 s.3.2.2: lengths (3,3,3,3,3,2,4,4) give codes 010 011 100 101 110 00 1110 1111.
    codes = huffman.canonical_codes([3, 3, 3, 3, 3, 2, 4, 4])
    assert codes.tolist() == [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]


def test_edge_alphabets():
    assert huffman.code_lengths([0, 0, 0]).tolist() == [0, 0, 0]
    assert huffman.code_lengths([0, 7, 0]).tolist() == [0, 1, 0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=256))
def test_kraft_equality_and_huffman_optimality(freqs):
    lengths = huffman.code_lengths(freqs)
    used = sum(f > 0 for f in freqs)
    assert all((l > 0) == (f > 0) for f, l in zip(freqs, lengths))
    assert lengths.max() <= huffman.MAX_CODE_LEN
    if used >= 2:
        assert huffman.kraft_sum(lengths) == 1 << huffman.MAX_CODE_LEN
        unlimited, depth = plain_huffman(freqs)
        assert huffman.encoded_bits(freqs, lengths) >= unlimited
        if depth <= huffman.MAX_CODE_LEN:
            assert huffman.encoded_bits(freqs, lengths) == unlimited


@pytest.mark.parametrize("freqs,max_len", [([1, 1, 2, 3, 5, 8], 3), ([1, 2, 4, 8, 16], 3), ([5, 1, 1, 1], 2),
                                           ([1, 1, 1, 1, 1, 1, 1, 30], 3), ([3, 3, 3], 2)])
def test_length_limit_is_optimal(freqs, max_len):
    lengths = huffman.code_lengths(freqs, max_len=max_len)
    assert lengths.max() <= max_len
    assert huffman.encoded_bits(freqs, lengths) == brute_force_cost(freqs, max_len)


def test_fibonacci_frequencies_hit_the_cap():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(fib)
    assert lengths.max() == huffman.MAX_CODE_LEN
    assert huffman.kraft_sum(lengths) == 1 << huffman.MAX_CODE_LEN


def reference_bits(symbols, lengths):
    codes = huffman.canonical_codes(lengths)
    return "".join(format(int(codes[s]), f"0{int(lengths[s])}b") for s in symbols)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 256), st.integers(0, 3000), st.integers(0, 2**32 - 1))
def test_encode_matches_reference_bits_and_decodes(alphabet, n, seed):
    rng = np.random.default_rng(seed)
    symbols = np.minimum(rng.geometric(0.3, n) - 1, alphabet - 1)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet))
    data = huffman.encode(symbols, lengths)
    bits = reference_bits(symbols, lengths)
    assert data == int(bits + "0" * (-len(bits) % 8) or "0", 2).to_bytes(len(data), "big")
    assert np.array_equal(huffman.decode(data, lengths, n), symbols)


def test_decode_across_chunks(monkeypatch):
    monkeypatch.setattr(huffman, "_CHUNK_BITS", 37)
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 20, 2000)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=20))
    assert np.array_equal(huffman.decode(huffman.encode(symbols, lengths), lengths, symbols.size), symbols)


def test_single_symbol_stream_costs_one_bit_each():
    lengths = huffman.code_lengths([0, 0, 9])
    data = huffman.encode([2] * 9, lengths)
    assert data == b"\x00\x00"
    assert huffman.decode(data, lengths, 9).tolist() == [2] * 9


@pytest.mark.parametrize("data,count,message", [
    (b"\x80", 1, "invalid Huffman code word at bit 0"),   # code '1' unused with lengths [1]: only '0' exists
    (b"\x00", 9, "symbols need at least"),
    (b"\x01", 7, "padding bits"),
    (b"\x00\x00", 8, "expected 1 bytes"),
    (b"", 1, "need at least"),
])
def test_decode_rejects_bad_streams(data, count, message):
    with pytest.raises(FormatError, match=message):
        huffman.decode(data, np.array([1], np.uint8), count)


def test_stream_ending_inside_a_code_word():
    lengths = np.array([1, 2, 2], np.uint8)  # codes 0, 10, 11
    with pytest.raises(FormatError, match="ends"):
        huffman.decode(b"\x01", lengths, 8)  # 0000000 then '1' cut off


def test_over_subscribed_table_is_rejected():
    with pytest.raises(FormatError, match="over-subscribed"):
        huffman.parse_lengths(huffman.serialize_lengths([1, 1, 1]), 3)


def test_format_doc_stream_example():
    lengths = [1, 2, 3, 3]
    assert huffman.canonical_codes(lengths).tolist() == [0b0, 0b10, 0b110, 0b111]
    assert huffman.serialize_lengths(lengths) + huffman.encode([0, 3, 1], lengths) == bytes.fromhex("123378")


def spec_package_merge(freqs, max_len=15):
    """docs/FORMAT.md section 9's tie-breaking package-merge, written from the text alone."""
    used = [s for s, f in enumerate(freqs) if f > 0]
    lengths = [0] * len(freqs)
    if len(used) <= 1:
        for s in used:
            lengths[s] = 1
        return lengths
    leaves = sorted(((freqs[s], [s]) for s in used), key=lambda leaf: (leaf[0], leaf[1][0]))
    items = leaves
    for _ in range(max_len - 1):
        packages = [(items[2 * i][0] + items[2 * i + 1][0], items[2 * i][1] + items[2 * i + 1][1])
                    for i in range(len(items) // 2)]
        items = sorted(leaves + packages, key=lambda item: item[0])  # stable: leaves first at equal weight
    for _, symbols in items[: 2 * len(used) - 2]:
        for s in symbols:
            lengths[s] += 1
    return lengths


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=40), st.integers(2, 15))
def test_spec_tie_breaks_reproduce_the_writer(freqs, max_len):
    # small frequencies: many ties, so any other tie-break would show
    if sum(f > 0 for f in freqs) > 1 << max_len:
        return
    assert huffman.code_lengths(freqs, max_len).tolist() == spec_package_merge(freqs, max_len)
