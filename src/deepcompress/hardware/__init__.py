"""Hardware cost models: the 45 nm technology table, the EIE cycle-level simulator and its metrics.

This package reads layer specs or sparse matrices; it never imports training code or torch.
"""
