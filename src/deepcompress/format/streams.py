"""A stream of small symbols as a section: fixed-width bits, or Huffman when that is smaller."""

from __future__ import annotations

import numpy as np

from . import bitstream, huffman
from .errors import FormatError


def encode_stream(symbols, alphabet: int, width: int) -> tuple[bytes, bool]:
    """Section bytes for `symbols` (each < alphabet <= 2**width) and whether they are Huffman-coded.

    Huffman form: the serialised code (alphabet 4-bit lengths) then the code bits. It is chosen only
    when strictly smaller than the fixed-width form.
    """
    symbols = np.asarray(symbols, dtype=np.int64)
    raw = bitstream.pack(symbols, width)
    if symbols.size == 0:
        return raw, False
    freqs = np.bincount(symbols, minlength=alphabet)
    lengths = huffman.code_lengths(freqs)
    coded_size = huffman.table_size(alphabet) + (huffman.encoded_bits(freqs, lengths) + 7) // 8
    if coded_size < len(raw):
        return huffman.serialize_lengths(lengths) + huffman.encode(symbols, lengths), True
    return raw, False


def decode_stream(data, alphabet: int, width: int, count: int, huffman_coded: bool) -> np.ndarray:
    """The `count` symbols (uint16, each < alphabet) of a section written by encode_stream."""
    data = bitstream.as_bytes_array(data)
    if not huffman_coded:
        symbols = bitstream.unpack(data, width, count)
    else:
        table = huffman.table_size(alphabet)
        if data.size < table:
            raise FormatError(f"Huffman code table: expected {table} bytes, got {data.size}")
        lengths = huffman.parse_lengths(data[:table], alphabet)
        symbols = huffman.decode(data[table:], lengths, count)
    if symbols.size and int(symbols.max()) >= alphabet:
        raise FormatError(f"symbol {int(symbols.max())} is out of range (expected < {alphabet})")
    return symbols
