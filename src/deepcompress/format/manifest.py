"""The .dcz preamble: fixed header, meta JSON, layer manifest and the CRC over all three.

Layout and every field are specified in docs/FORMAT.md.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .cursor import Cursor
from .errors import FormatError, located
from .layer import KIND_NDIM, MAX_GAP_BITS, MAX_INDEX_BITS, MAX_LAYER_ELEMENTS

MAGIC = b"DCZ\x1a"
VERSION = 3  # the newest version this reader accepts; a writer writes the lowest one that holds the file
HEADER = "<4sHHIII"  # magic, version, flags, n_layers, meta_len, manifest_len
HEADER_BYTES = struct.calcsize(HEADER)
CRC = "<I"
CRC_BYTES = 4
KIND_CODES = {"fc": 0, "conv": 1}
VALUE_F32, VALUE_F16 = 1, 2  # value dtype codes: codebook and bias values as float32 / float16
VALUE_DTYPES = {VALUE_F32: "f32", VALUE_F16: "f16"}
VALUE_CODES = {name: code for code, name in VALUE_DTYPES.items()}
VALUE_BYTES = {VALUE_F32: 4, VALUE_F16: 2}
VALUE_NUMPY = {VALUE_F32: "<f4", VALUE_F16: "<f2"}
VALUE_SINCE = {VALUE_F32: 1, VALUE_F16: 2}  # the first file format version with that value dtype
FLAG_INDEX_HUFFMAN, FLAG_GAP_HUFFMAN, FLAG_BIAS = 1, 2, 4
FLAG_ALL_STORED = 8  # every position holds a weight: no gap stream (version 3 on)
FLAGS_SINCE = {FLAG_INDEX_HUFFMAN: 1, FLAG_GAP_HUFFMAN: 1, FLAG_BIAS: 1, FLAG_ALL_STORED: 3}
_RECORD_TAIL = "<BBBBHIIIIII"  # index bits, gap bits, value dtype, flags, K, nnz, entries, 4 lengths
SECTIONS = ("codebook", "index stream", "gap stream", "bias")
_MIN_RECORD = struct.calcsize("<H") + 1 + 2 + 4 * 2 + struct.calcsize(_RECORD_TAIL)
# A file may describe at most this many weights (zeros included) per byte, or 2**26 in all if more, so a
# small hostile file cannot make a dense reader build huge arrays. The densest legal encoding covers 2040
# weights a byte (a gap entry spans at most 255 positions and costs at least 1 bit, docs/FORMAT.md s.10);
# only zeros after a layer's last stored weight cost nothing, and the floor admits those in small files.
WEIGHTS_PER_BYTE_LIMIT = 2048
WEIGHTS_FLOOR = 1 << 26


@dataclass
class LayerRecord:
    """One layer's manifest entry: everything needed to find and check its four sections."""

    name: str
    kind: str
    shape: tuple
    index_bits: int
    gap_bits: int
    flags: int
    codebook_size: int
    nnz: int
    entries: int
    section_lengths: tuple  # bytes of codebook, index stream, gap stream, bias (CRCs not included)
    record_bytes: int = 0
    value_dtype: int = VALUE_F32  # how codebook and bias values are stored (VALUE_DTYPES)

    @property
    def size(self) -> int:
        """Weights in the layer, zeros included."""
        return math.prod(self.shape)

    def pack(self) -> bytes:
        """This record's manifest bytes."""
        name = self.name.encode("utf-8")
        return (struct.pack("<H", len(name)) + name
                + struct.pack("<BB", KIND_CODES[self.kind], len(self.shape))
                + struct.pack(f"<{len(self.shape)}I", *self.shape)
                + struct.pack(_RECORD_TAIL, self.index_bits, self.gap_bits, self.value_dtype, self.flags,
                              self.codebook_size, self.nnz, self.entries, *self.section_lengths))


def weight_limit(file_bytes: int) -> int:
    """Most weights (zeros included, all layers) a file of this many bytes may describe."""
    return max(WEIGHTS_FLOOR, WEIGHTS_PER_BYTE_LIMIT * file_bytes)


def file_version(records: list[LayerRecord]) -> int:
    """The lowest format version that can hold these records: 1 unless a layer stores float16 values (2)
    or stores every position without a gap stream (3), so a file that needs neither is byte-identical to
    what a version-1 writer produced."""
    return max([1] + [VALUE_SINCE[r.value_dtype] for r in records]
               + [since for r in records for flag, since in FLAGS_SINCE.items() if r.flags & flag])


def pack_preamble(meta_json: bytes, records: list[LayerRecord]) -> bytes:
    """Header + meta + manifest + CRC32 of those."""
    manifest = b"".join(r.pack() for r in records)
    body = (struct.pack(HEADER, MAGIC, file_version(records), 0, len(records), len(meta_json), len(manifest))
            + meta_json + manifest)
    return body + struct.pack(CRC, zlib.crc32(body))


def check_crc(data, stored: int) -> None:
    """FormatError unless zlib.crc32(data) == stored."""
    actual = zlib.crc32(data)
    if actual != stored:
        raise FormatError(f"CRC32 mismatch: stored {stored:#010x}, computed {actual:#010x}")


META_MAX_DEPTH = 64  # levels of nested objects and arrays in meta; the top-level object is level 1
META_INT_MIN, META_INT_MAX = -(1 << 63), (1 << 63) - 1  # integers any reader can hold in a signed 64-bit
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # a JSON string, escapes included
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the only way a surrogate gets into decoded JSON


def _short(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


def _reject_constant(name):
    raise FormatError(f"JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise FormatError(f"number {_short(text)} is beyond the range of a 64-bit float")
    return value


def _int64(text: str) -> int:
    # the length test comes first so a hostile 10**6-digit integer is never converted
    if len(text.lstrip("-")) > 19 or not META_INT_MIN <= int(text) <= META_INT_MAX:
        raise FormatError(f"integer {_short(text)} is outside the signed 64-bit range -2**63..2**63-1")
    return int(text)


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise FormatError(f"duplicate key {_short(key)!r} in an object")
            seen.add(key)
    return obj


def _check_depth(text: str) -> None:
    """FormatError if objects and arrays nest deeper than META_MAX_DEPTH (counted flat, without recursion)."""
    # strings go first so brackets inside them do not count; UTF-8 multi-byte sequences hold no ASCII bytes
    code = np.frombuffer(_STRING.sub("", text).encode("utf-8"), dtype=np.uint8)
    step = ((code == ord("[")) | (code == ord("{"))).astype(np.int32) - ((code == ord("]")) | (code == ord("}")))
    if code.size and int(np.cumsum(step).max()) > META_MAX_DEPTH:
        raise FormatError(f"objects and arrays nest deeper than {META_MAX_DEPTH} levels")


def _check_strings(meta: dict) -> None:
    """FormatError if a key or string holds a lone surrogate (a \\ud800-\\udfff escape not in a pair)."""
    stack = [meta]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and (found := _SURROGATE.search(item)):
            raise FormatError(f"string {_short(item)!r} has an unpaired surrogate \\u{ord(found.group()):04x}")


def parse_meta(data) -> dict:
    """The meta dict from its UTF-8 JSON bytes; FormatError for anything docs/FORMAT.md section 4 refuses."""
    raw = bytes(data)
    if raw.startswith(codecs.BOM_UTF8):
        raise FormatError("starts with a UTF-8 byte order mark (EF BB BF), which is not allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
    _check_depth(text)
    try:
        meta = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant,
                          parse_float=_finite_float, parse_int=_int64)
    except (ValueError, RecursionError) as err:
        raise FormatError(f"not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise FormatError(f"expected a JSON object, got {type(meta).__name__}")
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(meta)
    return meta


def _parse_record(cur: Cursor, version: int) -> LayerRecord:
    start = cur.pos
    (name_len,) = cur.unpack("<H", "name length")
    try:
        name = bytes(cur.take(name_len, "name")).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("layer name is not valid UTF-8") from None
    if not name:
        raise FormatError("layer name is empty")
    with located(layer_name=name):
        kind_code, ndim = cur.unpack("<BB", "kind and rank")
        kind = {v: k for k, v in KIND_CODES.items()}.get(kind_code)
        if kind is None:
            raise FormatError(f"kind: expected 0 (fc) or 1 (conv), got {kind_code}")
        if ndim != KIND_NDIM[kind]:
            raise FormatError(f"rank: a {kind} layer has {KIND_NDIM[kind]} dims, got {ndim}")
        shape = cur.unpack(f"<{ndim}I", "shape")
        tail = cur.unpack(_RECORD_TAIL, "record fields")
        index_bits, gap_bits, value_dtype, flags, k, nnz, entries = tail[:7]
        rec = LayerRecord(name, kind, shape, index_bits, gap_bits, flags, k, nnz, entries, tail[7:],
                          cur.pos - start, value_dtype)
        _check_record(rec, version)
    return rec


def _check_record(rec: LayerRecord, version: int) -> None:
    def need(ok, field, expected, got):
        if not ok:
            raise FormatError(f"{field}: expected {expected}, got {got}")

    need(min(rec.shape) >= 1 and rec.size <= MAX_LAYER_ELEMENTS, "shape",
         f"dims >= 1 and at most {MAX_LAYER_ELEMENTS} weights", rec.shape)
    need(1 <= rec.index_bits <= MAX_INDEX_BITS, "index bits", f"1..{MAX_INDEX_BITS}", rec.index_bits)
    need(1 <= rec.gap_bits <= MAX_GAP_BITS, "gap bits", f"1..{MAX_GAP_BITS}", rec.gap_bits)
    allowed = [code for code, since in VALUE_SINCE.items() if since <= version]
    need(rec.value_dtype in allowed, "value dtype",
         " or ".join(f"{code} ({VALUE_DTYPES[code]})" for code in allowed) + f" in a version-{version} file",
         rec.value_dtype)
    known = sum(flag for flag, since in FLAGS_SINCE.items() if since <= version)
    need(rec.flags & ~known == 0, "stream flags", f"only bits of {known:#04x} set in a version-{version} file",
         f"{rec.flags:#04x}")
    if rec.flags & FLAG_ALL_STORED:
        need(rec.nnz == rec.entries == rec.size and rec.section_lengths[2] == 0 and not rec.flags & FLAG_GAP_HUFFMAN,
             "all-stored layer", f"{rec.size} nonzeros and entries, no gap stream",
             f"{rec.nnz} nonzeros, {rec.entries} entries, {rec.section_lengths[2]}-byte gap stream")
    need(rec.codebook_size <= 1 << rec.index_bits, "codebook size",
         f"at most 2**{rec.index_bits}", rec.codebook_size)
    need(rec.nnz <= rec.entries <= rec.size, "entry counts",
         f"nonzeros <= entries <= {rec.size} weights", f"{rec.nnz} nonzeros, {rec.entries} entries")
    need(rec.nnz == 0 or rec.codebook_size > 0, "codebook size", "at least 1 with nonzeros", 0)
    size = VALUE_BYTES[rec.value_dtype]
    need(rec.section_lengths[0] == size * rec.codebook_size, "codebook length",
         f"{size * rec.codebook_size} bytes", rec.section_lengths[0])
    bias_len = size * rec.shape[0] if rec.flags & FLAG_BIAS else 0
    need(rec.section_lengths[3] == bias_len, "bias length", f"{bias_len} bytes", rec.section_lengths[3])


@dataclass
class Preamble:
    """What the preamble says: meta, layer records and where the layer sections start."""

    meta: dict
    records: list[LayerRecord]
    header_bytes: int  # fixed header + meta + preamble CRC (the manifest records count per layer)


def parse_preamble(blob, *, verify_crc: bool = True) -> tuple[Preamble, Cursor]:
    """Read and check the preamble; the returned cursor stands at the first layer section."""
    cur = Cursor(blob)
    with located(section="header"):
        magic, version, flags, n_layers, meta_len, manifest_len = cur.unpack(HEADER, "fixed header")
        if magic != MAGIC:
            raise FormatError(f"not a .dcz file: magic {magic!r}, expected {MAGIC!r}")
        if version > VERSION:
            raise FormatError(f"file format version {version} is newer than this reader supports ({VERSION})")
        if version < 1:
            raise FormatError("file format version 0 is not valid")
        if flags:
            raise FormatError(f"flags: expected 0, got {flags:#06x}")
    with located(section="meta"):
        meta_raw = cur.take(meta_len, "meta JSON")
    with located(section="manifest"):
        manifest = Cursor(cur.take(manifest_len, "manifest"))
        if n_layers > manifest_len // _MIN_RECORD:
            raise FormatError(f"{n_layers} layers cannot fit in a manifest of {manifest_len} bytes")
    with located(section="preamble CRC"):
        (stored,) = cur.unpack(CRC, "CRC32")
        if verify_crc:
            check_crc(cur.data[: cur.pos - CRC_BYTES], stored)
    with located(section="meta"):
        meta = parse_meta(meta_raw)
    records, names = [], set()
    for index in range(n_layers):
        with located(layer_index=index, section="manifest"):
            rec = _parse_record(manifest, version)
            if rec.name in names:
                raise FormatError("layer name appears twice", layer_name=rec.name)
            names.add(rec.name)
            records.append(rec)
    with located(section="manifest"):
        manifest.expect_end(f"{n_layers} layer records")
    total = sum(r.size for r in records)
    if total > weight_limit(len(cur.data)):
        raise FormatError(f"the layers claim {total} weights, more than this reader accepts for a "
                          f"{len(cur.data)}-byte file ({weight_limit(len(cur.data))})", section="manifest")
    header_bytes = cur.pos - manifest_len
    return Preamble(meta, records, header_bytes), cur
