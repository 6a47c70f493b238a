"""Hardware cost models: the 45 nm technology table, the EIE cycle-level simulator, the DianNao model,
CPU/GPU rooflines, training cost and the talk's four sub-problems, and compressed model files run on them.

This package reads layer specs, sparse matrices or .dcz files; it never imports training code or torch.
"""
