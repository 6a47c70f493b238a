"""Write and read whole .dcz files: the public entry points of the format package."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from deepcompress.atomic import write_bytes

from . import relindex
from .errors import FormatError, located, reading
from .layer import LayerError, QuantizedLayer
from .manifest import (CRC, FLAG_ALL_STORED, FLAG_BIAS, FLAG_GAP_HUFFMAN, FLAG_INDEX_HUFFMAN, SECTIONS, VALUE_CODES, VALUE_DTYPES,
                       VALUE_NUMPY, LayerRecord, check_crc, pack_preamble, parse_meta, parse_preamble, weight_limit)
from .streams import decode_stream, encode_stream


def _meta_json(meta: dict) -> bytes:
    """The meta section's bytes; ValueError for a meta a reader would refuse (docs/FORMAT.md section 4)."""
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        blob = json.dumps(meta, allow_nan=False, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"meta: a string holds an unpaired surrogate {err.object[err.start]!r}") from None
    try:
        parse_meta(blob)
    except FormatError as err:
        raise ValueError(f"meta: {err.detail}; readers refuse it (docs/FORMAT.md section 4)") from None
    return blob


def _encode_layer(layer: QuantizedLayer) -> tuple[LayerRecord, list[bytes]]:
    layer = dataclasses.replace(layer)  # re-checks fields a caller may have changed since construction
    if min(layer.shape) < 1:
        raise LayerError(layer.name, [f"shape {layer.shape}: a file stores layers whose dims are all >= 1"])
    all_stored = layer.nnz == layer.size  # the positions are 0..size-1: no gap stream is needed
    gaps = relindex.positions_to_gaps(layer.positions, layer.gap_bits)
    index_data, index_huff = encode_stream(layer.indices, layer.codebook.size, layer.index_bits)
    gap_data, gap_huff = (b"", False) if all_stored else encode_stream(gaps, 1 << layer.gap_bits, layer.gap_bits)
    value_dtype = VALUE_CODES[layer.value_dtype]
    values = VALUE_NUMPY[value_dtype]  # exact: the layer already holds values of that type
    bias = b"" if layer.bias is None else layer.bias.astype(values).tobytes()
    sections = [layer.codebook.astype(values).tobytes(), index_data, gap_data, bias]
    flags = ((FLAG_INDEX_HUFFMAN * index_huff) | (FLAG_GAP_HUFFMAN * gap_huff) | (FLAG_BIAS * (layer.bias is not None))
             | (FLAG_ALL_STORED * all_stored))
    record = LayerRecord(layer.name, layer.kind, layer.shape, layer.index_bits, layer.gap_bits, flags,
                         layer.codebook.size, layer.nnz, gaps.size, tuple(len(s) for s in sections),
                         value_dtype=value_dtype)
    return record, sections


def encode(layers, meta: dict) -> bytes:
    """The .dcz bytes for these QuantizedLayers and this JSON-serialisable meta dict."""
    layers = list(layers)
    for layer in layers:
        if not isinstance(layer, QuantizedLayer):
            raise TypeError(f"expected QuantizedLayer, got {type(layer).__name__}")
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"layer names must be unique, got {names}")
    encoded = [_encode_layer(layer) for layer in layers]
    parts = [pack_preamble(_meta_json(meta), [record for record, _ in encoded])]
    for _, sections in encoded:
        for section in sections:
            parts += [section, struct.pack(CRC, zlib.crc32(section))]
    blob = b"".join(parts)
    total = sum(layer.size for layer in layers)
    if total > weight_limit(len(blob)):
        raise ValueError(f"{total} weights in a {len(blob)}-byte file exceed the readers' limit "
                         f"({weight_limit(len(blob))}); see docs/FORMAT.md 'Reader limits'")
    return blob


def _decode_layer(rec: LayerRecord, sections: list) -> QuantizedLayer:
    codebook_raw, index_raw, gap_raw, bias_raw = sections
    with located(section="gap stream"):
        positions = _positions(rec, gap_raw)
    with located(section="index stream"):
        indices = decode_stream(index_raw, rec.codebook_size, rec.index_bits, rec.nnz,
                                bool(rec.flags & FLAG_INDEX_HUFFMAN))
    values = VALUE_NUMPY[rec.value_dtype]  # float16 values widen to float32 exactly (inf and NaN stay so)
    codebook = np.frombuffer(codebook_raw, dtype=values).astype(np.float32)
    bias = np.frombuffer(bias_raw, dtype=values).astype(np.float32) if rec.flags & FLAG_BIAS else None
    try:
        return QuantizedLayer(rec.name, rec.kind, rec.shape, codebook, positions, indices, bias,
                              rec.index_bits, rec.gap_bits, VALUE_DTYPES[rec.value_dtype])
    except LayerError as err:
        raise FormatError("; ".join(err.problems)) from None


def _positions(rec: LayerRecord, gap_raw: bytes) -> np.ndarray:
    """The layer's nonzero positions: every one for an all-stored layer, else decoded from its gaps."""
    if rec.flags & FLAG_ALL_STORED:
        return np.arange(rec.size, dtype=np.int64)
    gaps = decode_stream(gap_raw, 1 << rec.gap_bits, rec.gap_bits, rec.entries, bool(rec.flags & FLAG_GAP_HUFFMAN))
    positions = relindex.gaps_to_positions(gaps, rec.gap_bits, rec.size)
    if positions.size != rec.nnz:
        raise FormatError(f"expected {rec.nnz} real entries (manifest), got {positions.size}")
    return positions


def read_sections(cur, rec: LayerRecord, verify_crc: bool = True) -> list:
    """The four sections of one layer at the cursor, each CRC-checked unless verify_crc is False."""
    sections = []
    for section, length in zip(SECTIONS, rec.section_lengths):
        with located(section=section):
            data = cur.take(length, "section")
            (stored,) = cur.unpack(CRC, "CRC32")
            if verify_crc:
                check_crc(data, stored)
            sections.append(data)
    return sections


def decode(blob, *, verify_crc: bool = True, file=None) -> tuple[list[QuantizedLayer], dict]:
    """The layers and meta of a .dcz file's bytes; FormatError (naming `file`) if they are not valid.

    verify_crc=False skips only the CRC comparisons (for diagnosis and tests); every other check stays.
    """
    with reading(file):
        preamble, cur = parse_preamble(blob, verify_crc=verify_crc)
        layers = []
        for index, rec in enumerate(preamble.records):
            with located(layer_index=index, layer_name=rec.name):
                layers.append(_decode_layer(rec, read_sections(cur, rec, verify_crc)))
        cur.expect_end("last layer")
    return layers, preamble.meta


def read_bytes(blob) -> tuple[list[QuantizedLayer], dict]:
    """The layers and meta of a .dcz file held in memory."""
    return decode(blob)


def read_file_bytes(path) -> bytes:
    """The bytes of `path`; FormatError naming it if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise FormatError(f"cannot read file ({err.strerror or err})", file=path) from None


def read(path) -> tuple[list[QuantizedLayer], dict]:
    """The layers and meta of the .dcz file at `path`."""
    return decode(read_file_bytes(path), file=path)


def write(path, layers, meta: dict) -> int:
    """Write layers and meta to `path` atomically as .dcz; returns the number of bytes written."""
    blob = encode(layers, meta)
    write_bytes(path, blob)
    return len(blob)
