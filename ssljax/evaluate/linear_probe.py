"""Linear probe on frozen features: the "contrastive + linear classification" protocol, made explicit.

1. Carve a validation split out of train (seeded); never look at test to choose anything.
2. Pick learning rate and weight decay from a grid by validation top-1.
3. Refit on the full train split with several seeds; report test top-1 (and top-5) as the mean and
   a 95% confidence interval over seeds (Student's t).
Features are standardised with the statistics of the rows a fit trains on (each minibatch as it is
drawn, so the features are held once). Training is AdamW with a cosine schedule on minibatches, one
``lax.scan`` per fit, so a whole fit is a single compiled call; the lr/wd grid is one such call,
its settings trained side by side on shared minibatches
(``experiments/benchmarks/linear_probe_grid.py`` measures what that saves).
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats
from tqdm.auto import tqdm

from ssljax.objectives import losses


def mean_ci95(values) -> tuple[float, float]:
  """Mean and half-width of the 95% confidence interval (t distribution) of ``values``."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return float(values.mean()), float("nan")
  half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
  return float(values.mean()), float(half)


def device_features(x: np.ndarray) -> jax.Array:
  """``x`` as the fits read it: aliased, not copied, on the CPU (ssljax/evaluate/features.py).
  bfloat16 features travel as their 16-bit patterns (uint16): XLA:CPU has no bfloat16 gather and
  would convert the whole array to float32 (once, hoisted out of the training loop: the very copy
  bfloat16 storage saves); ``gather_rows`` reinterprets the gathered rows."""
  if x.dtype == jnp.bfloat16:
    x = x.view(np.uint16)
  return jax.device_put(x, may_alias=True)


def gather_rows(x: jax.Array, idx: jax.Array) -> jax.Array:
  """``x[idx]`` in float32, for ``x`` from ``device_features``."""
  rows = x[idx]
  if rows.dtype == jnp.uint16:
    rows = jax.lax.bitcast_convert_type(rows, jnp.bfloat16)
  return rows.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs", "batch_size"))
def fit_linear_grid(x, y, rows, mean, scale, lrs, weight_decays, seed, *, num_classes, epochs,
                    batch_size):
  """Softmax regressions on the standardised features ``(x[rows] - mean) * scale``, one per
  (``lrs[g]``, ``weight_decays[g]``), trained together on the same minibatches (order from
  ``seed``); returns {'w': (G, D, K), 'b': (G, K)} of that standardised space. ``x`` is float32,
  or bfloat16 features as ``device_features`` passes them (their uint16 bit patterns).

  Minibatches are standardised as they are drawn, so the features are held once (a flattened map
  of 60k images is gigabytes) and never copied whole. The G fits share each drawn minibatch: the
  step is memory-bound (ten classes), so G fits cost little more than one."""
  n, d = rows.shape[0], x.shape[1]
  batch_size = min(batch_size, n)
  steps_per_epoch = n // batch_size
  total = epochs * steps_per_epoch
  optimizer = lambda lr, wd: optax.adamw(optax.cosine_decay_schedule(lr, total), weight_decay=wd)

  def init(lr, wd):
    params = {"w": jnp.zeros((d, num_classes)), "b": jnp.zeros((num_classes,))}
    return params, optimizer(lr, wd).init(params)

  def update(params, opt_state, lr, wd, xb, yb):
    grads = jax.grad(lambda p: losses.cross_entropy(xb @ p["w"] + p["b"], yb))(params)
    updates, opt_state = optimizer(lr, wd).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def epoch(carry, key):
    def step(carry, idx):
      xb = (gather_rows(x, idx) - mean) * scale
      return jax.vmap(update, in_axes=(0, 0, 0, 0, None, None))(*carry, lrs, weight_decays, xb,
                                                                 y[idx]), None
    order = rows[jax.random.permutation(key, n)[:steps_per_epoch * batch_size]]
    carry, _ = jax.lax.scan(step, carry, order.reshape(steps_per_epoch, batch_size))
    return carry, None

  keys = jax.random.split(jax.random.PRNGKey(seed), epochs)
  lrs, weight_decays = jnp.asarray(lrs, jnp.float32), jnp.asarray(weight_decays, jnp.float32)
  (params, _), _ = jax.lax.scan(epoch, jax.vmap(init)(lrs, weight_decays), keys)
  return params


def fit_linear(x, y, rows, mean, scale, lr, weight_decay, seed, *, num_classes, epochs,
               batch_size):
  """One softmax regression (``fit_linear_grid`` with a grid of one); returns {'w', 'b'}."""
  params = fit_linear_grid(x, y, rows, mean, scale, jnp.asarray([lr]), jnp.asarray([weight_decay]),
                           seed, num_classes=num_classes, epochs=epochs, batch_size=batch_size)
  return jax.tree.map(lambda a: a[0], params)


def feature_moments(x: np.ndarray, rows: np.ndarray, chunk: int = 2048):
  """(mean, 1 / (std + 1e-6)) per feature of ``x[rows]``, two passes over chunks accumulated in
  float64, so ``x[rows]`` is never copied whole."""
  part = lambda i: x[rows[i:i + chunk]].astype(np.float32)
  total = np.zeros(x.shape[1])
  for i in range(0, len(rows), chunk):
    total += part(i).sum(0, dtype=np.float64)
  mean = total / len(rows)
  squares = np.zeros(x.shape[1])
  for i in range(0, len(rows), chunk):
    squares += ((part(i) - mean) ** 2).sum(0)
  std = np.sqrt(squares / len(rows))
  return mean.astype(np.float32), (1.0 / (std + 1e-6)).astype(np.float32)


def linear_logits(params, x: np.ndarray, mean, scale, rows=None, chunk: int = 4096) -> np.ndarray:
  """Logits of the probe on raw features ``x[rows]`` (default: every row), chunk by chunk so
  ``x[rows]`` is never copied whole; the standardisation is folded into the weights."""
  w = np.asarray(params["w"]) * np.asarray(scale)[:, None]
  b = np.asarray(params["b"]) - np.asarray(mean) @ w
  rows = np.arange(len(x)) if rows is None else rows
  return np.concatenate([x[rows[i:i + chunk]].astype(np.float32) @ w + b
                         for i in range(0, len(rows), chunk)])


def topk_accuracy(logits: np.ndarray, y, k: int) -> float:
  top = np.argsort(-logits, axis=1)[:, :k]
  return float(np.mean(np.any(top == np.asarray(y)[:, None], axis=1)))


def validation_split(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """(validation indices, fit indices) of a train split of ``n`` images: the one split every
  validation figure (probe hyperparameters, kNN, the quickstart search) is measured on. Seeded and
  independent of the features, so every run and every representation shares it."""
  order = np.random.default_rng(0).permutation(n)
  n_val = max(1, int(round(val_fraction * n)))
  return order[:n_val], order[n_val:]


def validation_grid(train_x, train_y, device_x, device_y, num_classes, cfg) -> list[dict]:
  """Step 2 of the protocol: the lr x wd grid of ``cfg`` fit side by side on the train split less
  its validation split, and each setting's validation top-1 ({'lr', 'wd', 'val_top1'} per
  setting); ``device_x`` / ``device_y`` are ``train_x`` / ``train_y`` as ``device_features`` and
  ``jnp.asarray`` put them."""
  val_idx, fit_idx = validation_split(len(train_x), cfg.val_fraction)
  mean, scale = feature_moments(train_x, fit_idx)
  settings = list(itertools.product(cfg.lrs, cfg.weight_decays))
  fits = fit_linear_grid(device_x, device_y, jnp.asarray(fit_idx), mean, scale,
                         jnp.asarray([lr for lr, _ in settings]),
                         jnp.asarray([wd for _, wd in settings]), 0, num_classes=num_classes,
                         epochs=int(cfg.epochs), batch_size=int(cfg.batch_size))
  grid = []
  for g, (lr, wd) in enumerate(settings):
    logits = linear_logits(jax.tree.map(lambda a: a[g], fits), train_x, mean, scale, val_idx)
    grid.append({"lr": lr, "wd": wd,
                 "val_top1": topk_accuracy(logits, np.asarray(train_y)[val_idx], 1)})
  return grid


def linear_probe(train_x, train_y, test_x, test_y, num_classes, probe_config,
                 desc: str = "linear probe") -> dict:
  """Runs the whole protocol; returns the ``linear_probe`` section of the report."""
  cfg = probe_config
  # One step per compiled fit (the grid, then each seed's refit): minutes on a big representation.
  bar = tqdm(total=1 + int(cfg.seeds), desc=f"{desc} ({train_x.shape[1]}-d): grid, refits",
             leave=False, disable=jax.process_index() != 0)
  fit = functools.partial(fit_linear, num_classes=num_classes, epochs=int(cfg.epochs),
                          batch_size=int(cfg.batch_size))
  if train_x.dtype not in (np.float32, jnp.bfloat16):  # the stored dtypes; fits read float32
    train_x = np.asarray(train_x, np.float32)
  device_x, device_y = device_features(train_x), jnp.asarray(train_y)  # for every fit
  grid = validation_grid(train_x, train_y, device_x, device_y, num_classes, cfg)
  bar.update()
  best = max(grid, key=lambda g: g["val_top1"])
  every_row = np.arange(len(train_x))
  mean, scale = feature_moments(train_x, every_row)
  top1, top5 = [], []
  for seed in range(int(cfg.seeds)):
    params = fit(device_x, device_y, jnp.asarray(every_row), mean, scale, best["lr"], best["wd"],
                 seed)
    logits = linear_logits(params, test_x, mean, scale)
    top1.append(topk_accuracy(logits, test_y, 1))
    top5.append(topk_accuracy(logits, test_y, 5))
    bar.update()
  bar.close()
  del device_x
  mean1, ci1 = mean_ci95(top1)
  result = {"top1": mean1, "top1_ci95": ci1, "top1_per_seed": top1, "seeds": int(cfg.seeds),
            "val_top1": best["val_top1"], "chosen": {"lr": best["lr"], "wd": best["wd"]},
            "grid": grid, "train_size": len(train_x), "feature_dim": int(train_x.shape[1])}
  if num_classes > 5:
    result["top5"], result["top5_ci95"] = mean_ci95(top5)
  return result
