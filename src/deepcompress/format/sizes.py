"""Where a .dcz file's bytes go, read from the file itself (so the numbers add up to its length)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import bitstream
from .container import read_file_bytes, read_sections
from .errors import located, reading
from .manifest import (CRC_BYTES, FLAG_GAP_HUFFMAN, FLAG_INDEX_HUFFMAN, HEADER_BYTES, SECTIONS, VALUE_DTYPES,
                       parse_preamble)


@dataclass
class LayerSizes:
    """Bytes one layer takes in the file; `total` = header + codebook + index + gap + bias.

    `header` is its manifest record plus the four section CRCs. The *_raw fields say what the stream
    would take at fixed width (before Huffman); they are not part of the total. `dense_fp32` is the
    uncompressed weight + bias size, for compression ratios. `values` is how the codebook and bias are
    stored: "f32" or "f16".
    """

    name: str
    header: int
    codebook: int
    index: int
    index_raw: int
    index_huffman: bool
    gap: int
    gap_raw: int
    gap_huffman: bool
    fillers: int
    bias: int
    total: int
    dense_fp32: int
    values: str = "f32"


@dataclass
class SizeReport:
    """Per-layer sizes plus the file header (fixed header, meta JSON, preamble CRC); sums to `total`."""

    file_header: int
    meta: int
    layers: list[LayerSizes]
    total: int

    @property
    def dense_fp32(self) -> int:
        """Bytes of all weights and biases as dense float32."""
        return sum(layer.dense_fp32 for layer in self.layers)

    @property
    def ratio(self) -> float:
        """Dense float32 bytes over file bytes (the ratio Deep Compression reports)."""
        return self.dense_fp32 / self.total

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {**asdict(self), "dense_fp32": self.dense_fp32, "ratio": self.ratio}


def size_breakdown(blob, *, file=None) -> SizeReport:
    """The byte breakdown of .dcz bytes (checks structure and CRCs; does not decode the streams)."""
    with reading(file):
        preamble, cur = parse_preamble(blob)
        meta_len = preamble.header_bytes - HEADER_BYTES - CRC_BYTES
        layers = []
        for index, rec in enumerate(preamble.records):
            with located(layer_index=index, layer_name=rec.name):
                read_sections(cur, rec)
            codebook, index_len, gap_len, bias = rec.section_lengths
            header = rec.record_bytes + len(SECTIONS) * CRC_BYTES
            layers.append(LayerSizes(
                rec.name, header, codebook, index_len, bitstream.packed_size(rec.nnz, rec.index_bits),
                bool(rec.flags & FLAG_INDEX_HUFFMAN), gap_len, bitstream.packed_size(rec.entries, rec.gap_bits),
                bool(rec.flags & FLAG_GAP_HUFFMAN), rec.entries - rec.nnz, bias,
                header + codebook + index_len + gap_len + bias, 4 * (rec.size + rec.shape[0] * (bias > 0)),
                VALUE_DTYPES[rec.value_dtype]))
        cur.expect_end("last layer")
    return SizeReport(preamble.header_bytes, meta_len, layers, len(cur.data))


def file_size_breakdown(path) -> SizeReport:
    """size_breakdown of the file at `path`."""
    return size_breakdown(read_file_bytes(path), file=path)
