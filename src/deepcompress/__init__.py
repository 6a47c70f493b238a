"""deepcompress: compress, run and cost deep networks the way Deep Compression and EIE do."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`deepcompress.decompress` (a file back to a PyTorch module), imported on first use so that
    `import deepcompress` stays free of torch for the runtime and hardware packages."""
    if name == "decompress":
        from .to_torch import decompress
        return decompress
    raise AttributeError(f"module 'deepcompress' has no attribute {name!r}")
