"""Training in parallel on torch.distributed: data parallel, output-region convolution, reduced precision,
and a model of how a training step scales with workers (see docs/PARALLEL.md)."""
