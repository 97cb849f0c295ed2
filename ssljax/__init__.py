"""ssljax: self-supervised representation learning on JAX/Flax.

Sub-packages: data (sources, batches, on-device views), models (encoder registry, heads),
objectives (one file per family + pure losses), train (state, the generic step, loop, checkpoints,
mesh), evaluate (probes, report).
"""

__version__ = "0.1.0"
