"""deepcompress: compress, run and cost deep networks the way Deep Compression and EIE do."""

__version__ = "0.1.0"
