"""What keeping kNN's top-k in a jit of its own saves on XLA:CPU: ``ssljax.evaluate.knn`` (top-k
alone, then the vote) against the same computation in one jit (the former code, written out
below as the reference), on random features of the quickstart's shapes, in one process.

    python experiments/benchmarks/knn_topk.py [--bank 60000] [--queries 2048] [--dim 256] [--k 200]

Fused with the vote's gather, XLA:CPU compiles the top-k to a full sort of every (query, bank)
similarity. Prints the median seconds per 1,024-query chunk of each, whether the predictions
agree, and whether each compiled program sorts; last line ``knn_topk fused_s=... split_s=...
speedup=...``.
"""
from __future__ import annotations

import argparse
import functools
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--bank", type=int, default=60000)
  p.add_argument("--queries", type=int, default=2048)
  p.add_argument("--dim", type=int, default=256)
  p.add_argument("--k", type=int, default=200)
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from timing import median_seconds
  from ssljax.evaluate import knn

  @functools.partial(jax.jit, static_argnames=("k", "num_classes"))
  def fused(query, bank, bank_labels, *, k, num_classes, temperature):
    sims, idx = jax.lax.top_k(query @ bank.T, k)
    weights = jnp.exp((sims - sims[:, :1]) / temperature)
    votes = jax.nn.one_hot(bank_labels[idx], num_classes) * weights[..., None]
    return jnp.argmax(votes.sum(axis=1), axis=-1)

  rng = np.random.default_rng(0)
  bank = knn.l2_normalize(jnp.asarray(rng.standard_normal((args.bank, args.dim)), jnp.float32))
  labels = jnp.asarray(rng.integers(0, 10, args.bank))
  chunks = [knn.l2_normalize(jnp.asarray(rng.standard_normal((1024, args.dim)), jnp.float32))
            for _ in range(max(1, args.queries // 1024))]
  kwargs = dict(k=args.k, num_classes=10, temperature=0.1)
  run = lambda f: lambda: [jax.block_until_ready(f(q, bank, labels, **kwargs)) for q in chunks]
  agree = all(bool(jnp.all(fused(q, bank, labels, **kwargs) == knn._predict(q, bank, labels,
                                                                           **kwargs)))
              for q in chunks)
  sorts = {"fused": " sort(" in fused.lower(chunks[0], bank, labels, **kwargs).compile().as_text(),
           "split": " sort(" in knn._neighbours.lower(chunks[0], bank, k=args.k).compile().as_text()}
  fused_s = median_seconds(run(fused), args.repeats, warmup=1) / len(chunks)
  split_s = median_seconds(run(knn._predict), args.repeats, warmup=1) / len(chunks)
  print(f"bank {args.bank} x {args.dim}, k={args.k}, {len(chunks)} chunk(s) of 1024 queries; "
        f"predictions agree: {agree}; compiled program sorts: {sorts}")
  print(f"per chunk: fused {fused_s:.3f} s, split {split_s:.3f} s")
  print(f"knn_topk fused_s={fused_s:.3f} split_s={split_s:.3f} speedup={fused_s / split_s:.1f}")


if __name__ == "__main__":
  main()
