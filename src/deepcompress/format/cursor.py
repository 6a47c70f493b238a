"""Bounds-checked reading of a byte buffer: every read names what it reads and fails as FormatError."""

from __future__ import annotations

import struct

from .errors import FormatError


class Cursor:
    """Reads a buffer front to back; never reads past its end."""

    def __init__(self, data):
        self.data = memoryview(data).cast("B")
        self.pos = 0

    @property
    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self.data) - self.pos

    def take(self, count: int, what: str) -> memoryview:
        """The next `count` bytes."""
        if count > self.remaining:
            raise FormatError(f"{what}: expected {count} bytes at offset {self.pos}, only {self.remaining} left")
        view = self.data[self.pos: self.pos + count]
        self.pos += count
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        """The next struct `fmt` (little-endian formats only)."""
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def expect_end(self, what: str) -> None:
        """FormatError if any byte is left."""
        if self.remaining:
            raise FormatError(f"{self.remaining} unexpected bytes after the {what} (offset {self.pos})")
