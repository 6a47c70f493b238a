"""Coded vectors: how the dense int layouts (intdense.py) hold every weight, pruned ones too, as vectors
of 32-entry chunks:
- 4-bit codes into a 16-entry integer table (0.5 B per weight, decoded by vpshufb) when the quantized
  codebook plus 0 has at most 16 values (<= 15 entries, or an entry that rounds to 0);
- 4-bit codes plus one mask bit per weight (0.625 B) for 16-entry codebooks without a zero: a clear bit
  means pruned (weight 0);
- the quantized weights themselves (1 B int8, 2 B int16) for larger codebooks;
- 6-bit codes into a 64-entry int8 table (0.75 B), the 'rows-packed' layout's storage for codebooks of up
  to 64 values with 0 (decoded with AVX-512 VBMI: _lut.c's dc_rows8_vbmi).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CodedVectors:
    """n vectors of `length` (a multiple of 32) integer weights in one of the storages of the module docstring."""

    storage: str  # 'nibble', 'masked', 'stored' or 'packed6'
    store: np.ndarray  # uint8 (n, length/2) or (n, 3 length/4) codes, or (n, length) integer weights
    mask: np.ndarray  # uint8 (n, length/8) bits for 'masked', else (n, 0)
    table: np.ndarray  # 16 (64 for 'packed6') integer weights of the codes (unused for 'stored')

    @property
    def nibble(self) -> int:
        """1 when the vectors are 4-bit codes."""
        return int(self.storage in ("nibble", "masked"))

    @property
    def nbytes(self) -> int:
        """Bytes of codes (or weights) and mask."""
        return self.store.nbytes + self.mask.nbytes


def storage_for(q_c: np.ndarray) -> tuple[str, int]:
    """('nibble', code of weight 0), ('masked', 0) or ('stored', 0) for a quantized codebook."""
    if q_c.size > 16:
        return "stored", 0
    if q_c.size < 16:
        return "nibble", int(q_c.size)
    zeros = np.flatnonzero(q_c == 0)
    return ("nibble", int(zeros[0])) if zeros.size else ("masked", 0)


def bytes_per_weight(storage: str, precision: str) -> float:
    """Bytes a dense layout spends per weight in this storage."""
    return {"nibble": 0.5, "masked": 0.625, "packed6": 0.75}.get(storage, 1.0 if precision == "int8" else 2.0)


def packed6_zero(q_c: np.ndarray) -> int | None:
    """The 6-bit code of weight 0 for this quantized codebook (a spare code, or the entry that rounds to 0);
    None when no code is left for 0: 64 values none of which is 0, or more than 64."""
    if q_c.size < 64:
        return int(q_c.size)
    zeros = np.flatnonzero(q_c == 0)
    return int(zeros[0]) if zeros.size and q_c.size == 64 else None


def packed6_vectors(codes: np.ndarray, keep: np.ndarray, q_c: np.ndarray) -> CodedVectors:
    """Pack an (n, length) matrix of codebook indices (`keep` False where the weight is pruned; length a
    multiple of 32) as 6-bit codes (layout in _lut.c: 24 bytes per 32 codes, code i at bits 6i..6i+5);
    ValueError when the codebook leaves no code for 0."""
    zero = packed6_zero(q_c)
    if zero is None:
        raise ValueError(f"6-bit codes hold at most 63 nonzero values and 0; this codebook has {q_c.size}")
    n, length = codes.shape
    if length % 32:
        raise ValueError(f"coded vectors are whole 32-entry chunks; got length {length}")
    table = np.zeros(64, q_c.dtype)
    table[:q_c.size] = q_c
    c = np.where(keep, codes, zero).astype(np.uint32).reshape(n, -1, 4)  # 4 codes = 24 bits = 3 bytes
    bits = c[..., 0] | c[..., 1] << 6 | c[..., 2] << 12 | c[..., 3] << 18
    packed = np.stack([bits & 255, bits >> 8 & 255, bits >> 16], axis=-1).astype(np.uint8).reshape(n, -1)
    return CodedVectors("packed6", packed, np.zeros((n, 0), np.uint8), table)


def code_vectors(codes: np.ndarray, keep: np.ndarray, q_c: np.ndarray, stored: bool = False) -> CodedVectors:
    """Pack an (n, length) matrix of codebook indices (`keep` False where the weight is pruned); `stored`
    keeps the quantized weights themselves even where 4-bit codes would do."""
    n, length = codes.shape
    no_mask = np.zeros((n, 0), np.uint8)
    table = np.zeros(16, q_c.dtype)
    storage, zero = ("stored", 0) if stored else storage_for(q_c)
    if storage == "stored":
        return CodedVectors("stored", np.where(keep, q_c[codes], 0).astype(q_c.dtype), no_mask, table)
    table[:q_c.size] = q_c
    c = np.where(keep, codes, zero).astype(np.uint8)
    halves = c.reshape(n, -1, 2, 16)
    store = np.ascontiguousarray((halves[:, :, 0, :] | (halves[:, :, 1, :] << 4)).reshape(n, -1))
    if storage == "nibble":
        return CodedVectors("nibble", store, no_mask, table)
    return CodedVectors("masked", store, np.packbits(keep, axis=1, bitorder="little"), table)
