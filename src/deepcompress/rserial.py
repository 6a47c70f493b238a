"""Read R's serialized data (XDR format, versions 2 and 3) and R lazy-load databases (.rdx index + .rdb
blobs), for data sets shipped as R packages, without R.

Only data are read: character, integer, logical and double vectors, lists, pairlists and symbols, with
their attributes (names). Anything else (closures, environments, bytecode, ALTREP, external pointers) is
refused, and every length is checked against the bytes that remain, so a hostile or corrupt file gives
one RFormatError and never an allocation it cannot back.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError

# SEXP types (R Internals, "Serialization formats").
NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 0, 1, 2, 9, 10, 13, 14, 16, 19
REFSXP, NILVALUE_SXP = 255, 254
NA_INTEGER = -(2 ** 31)
UTF8_MASK, LATIN1_MASK, BYTES_MASK = 1 << 3, 1 << 2, 1 << 1
MAX_DEPTH = 64


class RFormatError(UserError):
    """R serialized data that is corrupt, truncated, or holds something other than plain data."""


@dataclass
class RObject:
    """An R vector or list with its attributes: `value` is a list (of str/None, or of RObjects) or a numpy
    array; `attributes` maps attribute names to RObjects ({"names": ...} for named vectors and lists)."""

    value: object
    attributes: dict = field(default_factory=dict)

    def names(self) -> list[str] | None:
        """The R names() of this object, if any."""
        names = self.attributes.get("names")
        return None if names is None else list(names.value)


class _Reader:
    """A cursor over one serialized object with bounds-checked reads."""

    def __init__(self, blob: bytes, source: str):
        self.blob, self.pos, self.source = memoryview(blob), 0, source
        self.refs: list = []

    def fail(self, what: str) -> RFormatError:
        return RFormatError(f"{self.source}: {what} (at byte {self.pos})")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.blob):
            raise self.fail(f"needs {n} more bytes, {len(self.blob) - self.pos} left (truncated?)")
        view = self.blob[self.pos : self.pos + n]
        self.pos += n
        return view

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self, item_bytes: int) -> int:
        n = self.int()
        if n == -1:  # long vector: two more words
            hi, lo = struct.unpack(">II", self.take(8))
            n = (hi << 32) | lo
        if n < 0 or n * max(item_bytes, 1) > len(self.blob) - self.pos:
            raise self.fail(f"vector length {n} exceeds the {len(self.blob) - self.pos} bytes left")
        return n


def unserialize(blob: bytes, source: str = "R data") -> object:
    """The R object serialized in `blob` ("X\\n" XDR header, as saveRDS and lazy-load databases write it)."""
    r = _Reader(blob, source)
    if bytes(r.take(2)) != b"X\n":
        raise r.fail("not R XDR serialization (expected the header 'X\\n')")
    version = r.int()
    r.take(8)  # the writer's R version and the oldest R that can read it
    if version == 3:
        r.take(r.length(1))  # the native encoding's name
    elif version != 2:
        raise r.fail(f"serialization version {version} is not supported (2 or 3)")
    return _item(r, 0)


def _item(r: _Reader, depth: int):
    if depth > MAX_DEPTH:
        raise r.fail(f"nested deeper than {MAX_DEPTH} levels")
    flags = r.int()
    kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
    if kind == NILVALUE_SXP:
        return None
    if kind == REFSXP:
        index = (flags >> 8) or r.int()
        if not 1 <= index <= len(r.refs):
            raise r.fail(f"reference {index} to one of {len(r.refs)} earlier objects")
        return r.refs[index - 1]
    if kind == SYMSXP:
        name = _item(r, depth + 1)
        r.refs.append(name)
        return name
    if kind == CHARSXP:
        return _chars(r, flags >> 12)
    if kind == LISTSXP:
        return _pairlist(r, has_attr, has_tag, depth)
    value = _vector(r, kind, depth)
    return RObject(value, _attributes(r, depth) if has_attr else {})


def _chars(r: _Reader, levels: int) -> str | None:
    n = r.int()
    if n == -1:
        return None  # NA_character_
    if n < 0:
        raise r.fail(f"string length {n}")
    raw = bytes(r.take(n))
    if levels & BYTES_MASK:
        raise r.fail("a string of raw bytes (no text encoding) is not supported")
    try:
        return raw.decode("latin-1" if levels & LATIN1_MASK else "utf-8")
    except UnicodeDecodeError as exc:
        raise r.fail(f"a string is not valid UTF-8 ({exc.reason})") from None


def _vector(r: _Reader, kind: int, depth: int):
    if kind == STRSXP:
        strings = []
        for _ in range(r.length(4)):
            flags = r.int()
            if flags & 0xFF != CHARSXP:
                raise r.fail(f"a character vector holds type {flags & 0xFF}, expected strings")
            strings.append(_chars(r, flags >> 12))
        return strings
    if kind in (LGLSXP, INTSXP):
        n = r.length(4)
        return np.frombuffer(r.take(4 * n), ">i4").astype(np.int32)
    if kind == REALSXP:
        n = r.length(8)
        return np.frombuffer(r.take(8 * n), ">f8").astype(np.float64)
    if kind == VECSXP:
        return [_item(r, depth + 1) for _ in range(r.length(4))]
    raise r.fail(f"R object type {kind} is not plain data (only vectors, lists and symbols are read)")


def _attributes(r: _Reader, depth: int) -> dict:
    pairs = _item(r, depth + 1)
    if not isinstance(pairs, dict):
        raise r.fail("attributes are not a tagged pairlist")
    return pairs


def _pairlist(r: _Reader, has_attr: bool, has_tag: bool, depth: int) -> dict:
    """A pairlist as {tag: value}, read iteratively along its CDR chain."""
    out = {}
    while True:
        if has_attr:
            _attributes(r, depth)
        tag = _item(r, depth + 1) if has_tag else f"[[{len(out) + 1}]]"
        out[tag] = _item(r, depth + 1)
        flags = r.int()
        kind = flags & 0xFF
        if kind == NILVALUE_SXP:
            return out
        if kind != LISTSXP:
            raise r.fail(f"a pairlist continues with type {kind}")
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))


def read_lazyload(rdx: str | Path, rdb: str | Path) -> dict[str, object]:
    """Every variable of an R lazy-load database (a package's data/Rdata.rdx + Rdata.rdb), by name."""
    rdx, rdb = Path(rdx), Path(rdb)
    try:
        index = unserialize(_gunzip_or_raw(rdx.read_bytes(), rdx), str(rdx))
        blob = rdb.read_bytes()
    except OSError as exc:
        raise RFormatError(f"cannot read {exc.filename}: {exc.strerror}") from None
    variables = index.value[0] if isinstance(index, RObject) and index.names() and index.value else None
    if not (isinstance(variables, RObject) and index.names()[0] == "variables" and variables.names()):
        raise RFormatError(f"{rdx}: not a lazy-load index (no 'variables' list)")
    return {name: _blob_object(blob, where, f"{rdb}[{name}]")
            for name, where in zip(variables.names(), variables.value)}


def _gunzip_or_raw(blob: bytes, path: Path) -> bytes:
    if blob[:2] != b"\x1f\x8b":
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError) as exc:
        raise RFormatError(f"{path}: corrupt gzip data ({exc})") from None


def _blob_object(rdb: bytes, where, source: str):
    """The object at (offset, length) in the .rdb: a 4-byte big-endian size, then zlib data."""
    if not (isinstance(where, RObject) and isinstance(where.value, np.ndarray) and len(where.value) == 2):
        raise RFormatError(f"{source}: index entry is not an (offset, length) pair")
    offset, length = (int(v) for v in where.value)
    if offset < 0 or length < 5 or offset + length > len(rdb):
        raise RFormatError(f"{source}: bytes {offset}..{offset + length} lie outside the {len(rdb)}-byte file")
    size = struct.unpack(">I", rdb[offset : offset + 4])[0]
    decomp = zlib.decompressobj()
    try:
        raw = decomp.decompress(rdb[offset + 4 : offset + length], size + 1)  # never inflate past the stated size
    except zlib.error as exc:
        raise RFormatError(f"{source}: corrupt zlib data ({exc})") from None
    if len(raw) != size:
        raise RFormatError(f"{source}: inflates to {len(raw)} bytes, its header says {size}")
    return unserialize(raw, source)
