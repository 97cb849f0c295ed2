"""Transfer, freeze vs fine-tune: how much of the pretrained encoder is worth keeping on a different
labelled dataset (the seeds' transfer-learning recipe).

For k = 0..S (S = the encoder's number of stages): freeze its first k stages, put a freshly
initialised linear head on it, train the head at ``transfer.lr`` and the unfrozen stages at
``lr / 10`` (pretrained weights should move less than a new head), test top-1 on the new dataset.
k = S freezes every encoder parameter ("linear probe"), k = 0 trains them all ("full fine-tune");
a last row trains a freshly initialised encoder at ``lr`` ("from scratch"), the reference that says
whether pretraining helped at all.

Which parameters belong to which stage is read off the network itself, for every encoder family:
parameter subtree P (a top-level name in the encoder's params, i.e. a layer or block) belongs to the
first stage whose output depends on P, found by following data dependencies through the jaxpr of
the encoder's forward pass. For the small CNN that gives block{i} <- conv{i}, bn{i}; for ResNets
the stem stage ("conv1") <- stem_conv, stem_bn and stage{i} <- stage{i}_block*. Parameters no
stage depends on (layers after the last stage, e.g. LeNet's F5/F6 or an MLP's code layer) freeze
only with the whole encoder. Stages without parameters (a pooling step) get no row of their own.

Freezing is a zero update: each parameter's update is multiplied by a factor given as data
(0 frozen, 1/10 fine-tuned, 1 head) after AdamW, so frozen weights stay bit-for-bit unchanged and
all rows share one compiled step. BatchNorm runs in inference mode throughout (running statistics,
never updated): a frozen stage computes exactly the pretrained function; a fine-tuned BN layer
adapts through its scale and bias.

The new dataset's images are resized (bilinear) to the pretraining input size and channel-adapted
(grey -> RGB by repetition, RGB -> grey by averaging), e.g. scikit-learn's 8x8 digits -> 28x28x1.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend import core

from ssljax.data import views
from ssljax.data.sources import Dataset, load_dataset
from ssljax.errors import UserError
from ssljax.models.heads import LinearHead
from ssljax.objectives import losses
from ssljax.objectives.base import select_features
from ssljax.train import parallel

AFTER_STAGES = "(after last stage)"


# --- stages -> parameters ---------------------------------------------------------------------
def _dependencies(jaxpr, in_deps: list[frozenset]) -> list[frozenset]:
  """For each output of ``jaxpr``, the set of inputs it depends on. Sub-jaxprs (jit, custom_jvp)
  are followed; any other multi-output primitive makes each output depend on all of its inputs."""
  env = {v: d for v, d in zip(jaxpr.invars, in_deps)}
  read = lambda v: frozenset() if isinstance(v, core.Literal) else env.get(v, frozenset())
  for eqn in jaxpr.eqns:
    ins = [read(v) for v in eqn.invars]
    sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
    if isinstance(sub, core.Jaxpr) and len(sub.invars) == len(ins) \
        and len(sub.outvars) == len(eqn.outvars):
      outs = _dependencies(sub, ins)
    else:
      outs = [frozenset().union(*ins)] * len(eqn.outvars)
    env.update(zip(eqn.outvars, outs))
  return [read(v) for v in jaxpr.outvars]


def stage_params(encoder, variables: dict, image_shape) -> dict[str, list[str]]:
  """{stage name (network order): top-level parameter names that first feed it}, plus
  ``AFTER_STAGES`` for parameters no stage depends on (if any)."""
  params = variables["params"]
  rest = {k: v for k, v in variables.items() if k != "params"}
  order: list[str] = []

  def stages_of(params):
    _, stages = encoder.apply({"params": params, **rest}, jnp.zeros((1, *image_shape)), train=False)
    order[:] = list(stages)  # the encoder's own order; jit outputs would re-sort dict keys
    return [stages[name] for name in order]

  closed = jax.make_jaxpr(stages_of)(params)
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  owner = [path[0].key for path in paths]
  deps = _dependencies(closed.jaxpr, [frozenset([i]) for i in range(len(paths))])
  groups, seen = {}, set()
  for name, dep in zip(order, deps):
    names = {owner[i] for i in dep} - seen
    groups[name] = sorted(names)
    seen |= names
  trailing = [name for name in params if name not in seen]
  if trailing:
    groups[AFTER_STAGES] = sorted(trailing)
  return groups


# --- data --------------------------------------------------------------------------------------
def adapt_images(images: np.ndarray, shape, chunk: int = 4096) -> np.ndarray:
  """uint8 (N,h,w,c) -> uint8 (N,H,W,C) of ``shape`` = (H, W, C)."""
  h, w, c = shape
  if images.shape[-1] != c:
    if images.shape[-1] == 1:
      images = np.repeat(images, c, axis=-1)
    elif c == 1:
      images = np.round(images.mean(-1, keepdims=True)).astype(np.uint8)
    else:
      raise UserError(f"transfer: cannot adapt {images.shape[-1]} channels to {c}")
  if images.shape[1:3] == (h, w):
    return images
  resize = jax.jit(lambda x: jax.image.resize(x.astype(jnp.float32), (x.shape[0], h, w, c),
                                              "linear"))
  out = [np.asarray(resize(images[i:i + chunk])) for i in range(0, len(images), chunk)]
  return np.clip(np.round(np.concatenate(out)), 0, 255).astype(np.uint8)


def transfer_dataset(spec: str, shape, train_subset: int = 0) -> Dataset:
  data = load_dataset(spec)
  if data.train_labels is None or data.test_labels is None:
    raise UserError(f"transfer dataset {spec!r} has no labels; transfer needs a labelled dataset")
  n = int(train_subset) or len(data.train_images)
  return Dataset(data.name, adapt_images(data.train_images[:n], shape), data.train_labels[:n],
                 adapt_images(data.test_images, shape), data.test_labels, data.num_classes)


# --- training ----------------------------------------------------------------------------------
class _Trainer:
  """One compiled step and one compiled predict shared by every row of the table."""

  def __init__(self, encoder, head, features: str, lr: float, weight_decay: float, total_steps: int):
    self.tx = optax.adamw(optax.cosine_decay_schedule(lr, max(total_steps, 1)),
                          weight_decay=weight_decay)

    def logits(params, batch_stats, images):
      pooled, stages = encoder.apply({"params": params["encoder"], "batch_stats": batch_stats},
                                     views.to_float(images), train=False)
      return head.apply({"params": params["head"]}, select_features(pooled, stages, features))

    def step(params, opt_state, factors, batch_stats, images, labels):
      loss_fn = lambda p: losses.cross_entropy(logits(p, batch_stats, images), labels)
      grads = jax.grad(loss_fn)(params)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      # where(), not p + 0 * u: a frozen weight keeps its exact bits (even the sign of a zero).
      params = jax.tree.map(lambda p, u, f: jnp.where(f == 0, p, p + f * u), params, updates,
                            factors)
      return params, opt_state

    self.step = jax.jit(step)
    self.predict = jax.jit(lambda p, bs, x: jnp.argmax(logits(p, bs, x), -1))

  def fit(self, params, factors, batch_stats, data: Dataset, epochs: int, batch_size: int,
          seed: int, sharding):
    opt_state = self.tx.init(params)
    rng = np.random.default_rng(seed)
    n = len(data.train_images)
    for _ in range(epochs):
      order = rng.permutation(n)
      for start in range(0, n - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        params, opt_state = self.step(params, opt_state, factors, batch_stats,
                                      jax.device_put(data.train_images[idx], sharding),
                                      jax.device_put(data.train_labels[idx], sharding))
    return params

  def accuracy(self, params, batch_stats, images, labels, batch_size: int, sharding) -> float:
    preds = []
    for start in range(0, len(images), batch_size):
      chunk = images[start:start + batch_size]
      pad = batch_size - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
      preds.append(np.asarray(self.predict(params, batch_stats,
                                           jax.device_put(chunk, sharding)))[:batch_size - pad])
    return float(np.mean(np.concatenate(preds) == labels))


def _factors(params: dict, frozen: set[str], encoder_factor: float) -> dict:
  enc = {name: jax.tree.map(lambda p: jnp.float32(0.0 if name in frozen else encoder_factor), sub)
         for name, sub in params["encoder"].items()}
  return {"encoder": enc, "head": jax.tree.map(lambda p: jnp.float32(1.0), params["head"])}


def run_transfer(objective, variables: dict, image_shape, config, data: Dataset | None = None,
                 return_params: bool = False) -> dict:
  """The ``transfer`` section of the report; ``config`` is the run's whole config.
  ``return_params``: each row also holds its trained encoder parameters (host arrays; tests)."""
  cfg = config.transfer
  if "encoder" not in objective.networks:
    return {"skipped": f"objective {config.objective!r} has no network named 'encoder'"}
  t0 = time.perf_counter()
  data = data or transfer_dataset(cfg.dataset, image_shape, cfg.train_subset)
  encoder = objective.networks["encoder"]
  pretrained = {"params": variables["params"]["encoder"],
                "batch_stats": variables["batch_stats"].get("encoder", {})}
  groups = stage_params(encoder, pretrained, image_shape)
  # Stages without parameters (a pooling step) would repeat the row before them.
  stage_names = [s for s in groups if s != AFTER_STAGES and groups[s]]
  features = cfg.features or config.probe.features
  # One device: transfer datasets are small, and one device needs no cross-device all-reduce
  # (XLA:CPU aborts the process when a device thread misses a collective for 40 s, which an
  # oversubscribed host was seen to cause here).
  mesh = parallel.make_mesh(1)
  batch_size = min(int(cfg.batch_size), len(data.train_images))
  steps = int(cfg.epochs) * (len(data.train_images) // batch_size)
  head = LinearHead(data.num_classes)
  sample = jnp.zeros((1, *image_shape))
  pooled, stages = encoder.apply(pretrained, sample, train=False)
  key = jax.random.PRNGKey(int(cfg.seed))
  head_params = head.init(key, select_features(pooled, stages, features))["params"]
  trainer = _Trainer(encoder, head, features, float(cfg.lr), float(cfg.weight_decay), steps)
  sharding, replicated = parallel.batch_sharding(mesh), parallel.replicated(mesh)
  put = lambda tree: jax.device_put(jax.tree.map(jnp.asarray, tree), replicated)

  def row(label, k, start, frozen, encoder_factor):
    params = put({"encoder": start["params"], "head": head_params})
    factors = put(_factors(params, frozen, encoder_factor))
    batch_stats = put(start["batch_stats"])
    before = jax.device_get(params["encoder"])
    params = trainer.fit(params, factors, batch_stats, data, int(cfg.epochs), batch_size,
                         int(cfg.seed), sharding)
    after = jax.device_get(params["encoder"])
    unchanged = all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for name in frozen
                    for a, b in zip(jax.tree.leaves(before[name]), jax.tree.leaves(after[name])))
    trainable = sum(int(np.size(p)) for name, sub in after.items() if name not in frozen
                    for p in jax.tree.leaves(sub))
    top1 = trainer.accuracy(params, batch_stats, data.test_images, data.test_labels, batch_size,
                            sharding)
    result = {"row": label, "frozen_stages": k, "frozen": sorted(frozen), "top1": top1,
              "trainable_encoder_params": trainable, "frozen_unchanged": bool(unchanged)}
    return {**result, "params": after} if return_params else result

  rows = []
  for k in range(len(stage_names), -1, -1):  # linear probe first: the cheapest, most-read row
    frozen = {p for s in stage_names[:k] for p in groups[s]}
    if k == len(stage_names):
      frozen |= set(groups.get(AFTER_STAGES, ()))
      label = "linear probe"
    else:
      label = "full fine-tune" if k == 0 else f"freeze {', '.join(stage_names[:k])}"
    rows.append(row(label, k, pretrained, frozen, 0.1))
  scratch = encoder.init(jax.random.fold_in(key, 1), sample, train=False)
  scratch = {"params": scratch["params"], "batch_stats": scratch.get("batch_stats", {})}
  rows.append(row("from scratch", None, scratch, set(), 1.0))
  best = max(rows, key=lambda r: r["top1"])
  return {"dataset": data.name, "image_shape": list(image_shape), "train_size": len(data.train_images),
          "test_size": len(data.test_images), "num_classes": data.num_classes,
          "epochs": int(cfg.epochs), "batch_size": batch_size, "lr_head": float(cfg.lr),
          "lr_encoder": float(cfg.lr) / 10, "features": features, "stages": groups, "rows": rows,
          "best": best["row"], "wall_s": time.perf_counter() - t0}
