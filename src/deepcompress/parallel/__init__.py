"""Training in parallel on torch.distributed: data parallel, a Downpour parameter server, output-region
convolution, reduced precision, fault handling, and a model of how a training step scales with workers
(see docs/PARALLEL.md)."""
