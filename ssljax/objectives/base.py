"""What every objective is: networks around an encoder, views built from a batch, and players.

A *player* is a set of parameters (top-level keys of ``params``) with its own loss, optimizer and
number of steps per round. The generic train step (``ssljax.train.step``) knows only players, so an
objective never touches devices, optimizers or the update rule. Every objective but the GAN has one
player; the GAN has a discriminator (k1 steps) and a generator (k2 steps).

Variables are kept as ``{'params': {module_name: ...}, 'batch_stats': {module_name: ...}}`` with
one entry per network, so "the parameters of player P" is simply a set of module names.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, ClassVar, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax.errors import UserError
from ssljax.models.heads import LinearHead
from ssljax.objectives import losses
from ssljax.registry import Registry

# (params, batch_stats, batch, key) -> (loss, (new_batch_stats, metrics))
LossFn = Callable[[dict, dict, dict, jax.Array], tuple[jax.Array, tuple[dict, dict]]]

OBJECTIVES: Registry[type["Objective"]] = Registry("objective")
register_objective = OBJECTIVES.register


@dataclasses.dataclass(frozen=True)
class Player:
  name: str
  owns: tuple[str, ...]  # the module names whose parameters this player updates
  loss: LossFn
  optimizer: ml_collections.ConfigDict
  steps: int = 1


def init_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(the key every network is initialised from, the key training's randomness folds from) of a
  run's seed: one definition, so the untrained-encoder control is the run's own initialisation."""
  init_key, train_key = jax.random.split(jax.random.PRNGKey(seed))
  return init_key, train_key


def select_features(pooled: jax.Array, stages: Mapping[str, jax.Array], which: str) -> jax.Array:
  """The representation a probe reads: ``pooled`` (the encoder's (B, D) output), ``last_stage``
  (its final feature map, flattened) or any stage name, flattened."""
  if which == "pooled":
    return pooled
  if which == "last_stage":
    which = list(stages)[-1]
  if which not in stages:
    raise UserError(f"probe features {which!r} unknown; use 'pooled', 'last_stage' or one of "
                    f"{', '.join(stages)}")
  return stages[which].reshape(stages[which].shape[0], -1).astype(jnp.float32)


class Objective:
  """Base class. Subclasses set ``default_config``, build ``self.networks`` and define ``init``,
  ``players``; ``features`` (what probes evaluate) defaults to the encoder's output."""

  default_config: ClassVar[dict[str, Any]] = {}
  views_per_image: ClassVar[int] = 1  # encoder passes per dataset image (InfoNCE: 2 views)
  needs_labels: ClassVar[bool] = False  # True: training reads batch["labels"] (supervised)
  micro_batching: ClassVar[bool] = False  # True: the loss honours config.micro_batch_size

  def __init__(self, config: ml_collections.ConfigDict, encoder: nn.Module,
               image_shape: tuple[int, int, int], num_classes: int):
    self.config = config
    self.args = resolve_args(type(self), config.get("objectives", {}).get(config.objective, {}),
                             config.objective)
    self.image_shape = tuple(image_shape)
    self.num_classes = num_classes
    self.networks: dict[str, nn.Module] = {"encoder": encoder}
    # Fixed at training time (it sets the head's input size), and not probe.features: evaluation
    # settings may change after training and the checkpoint must still restore.
    self.probe_features = config.get("online_probe_features", "pooled")
    if config.get("micro_batch_size", 0) and not self.micro_batching:
      raise UserError(f"objective {config.objective!r} does not support micro_batch_size; "
                      "micro-batching (gradient caching) is for batch-coupled losses: "
                      f"{', '.join(n for n in OBJECTIVES.names() if OBJECTIVES[n].micro_batching)}")
    if config.online_probe and num_classes:
      self.networks["online_probe"] = LinearHead(num_classes)

  # --- variables -----------------------------------------------------------------------------
  def init(self, key: jax.Array, images: jax.Array) -> dict:
    """Variables for every network; subclasses extend with their own heads."""
    variables = {"params": {}, "batch_stats": {}}
    keys = jax.random.split(key, 2)
    (pooled, stages) = self.init_network(variables, "encoder", keys[0], images)
    if "online_probe" in self.networks:
      self.init_network(variables, "online_probe", keys[1],
                        select_features(pooled, stages, self.probe_features))
    return variables

  def init_network(self, variables: dict, name: str, key: jax.Array, *inputs) -> Any:
    """Initialises network ``name`` into ``variables`` (in place) and returns its output."""
    out, new = self.networks[name].init_with_output(
        {"params": key, "dropout": key}, *inputs, train=False)
    variables["params"][name] = new["params"]
    if "batch_stats" in new:
      variables["batch_stats"][name] = new["batch_stats"]
    return out

  def apply(self, name: str, params: dict, batch_stats: dict, *inputs, train: bool,
            key: jax.Array | None = None):
    """Runs network ``name``; returns (output, batch_stats with its running statistics updated)."""
    variables = {"params": params[name]}
    if name in batch_stats:
      variables["batch_stats"] = batch_stats[name]
    rngs = {"dropout": key} if key is not None else None
    if train and name in batch_stats:
      out, updated = self.networks[name].apply(variables, *inputs, train=True, rngs=rngs,
                                               mutable=["batch_stats"])
      return out, {**batch_stats, name: updated["batch_stats"]}
    return self.networks[name].apply(variables, *inputs, train=train, rngs=rngs), batch_stats

  # --- training ------------------------------------------------------------------------------
  def players(self) -> list[Player]:
    raise NotImplementedError

  def online_probe_loss(self, params, pooled, stages, labels,
                        features=None) -> tuple[jax.Array, dict]:
    """A linear head on stop_gradient(features), trained in the same step for free (BYOL's trick):
    it never changes the encoder, and its accuracy tracks the representation as training goes.
    ``features``: the probe's input already selected (``probe_input``), e.g. per micro-batch."""
    if "online_probe" not in self.networks:
      return jnp.zeros(()), {}
    if features is None:
      features = self.probe_input(pooled, stages)
    features = jax.lax.stop_gradient(features)
    logits, _ = self.apply("online_probe", params, {}, features, train=False)
    loss = losses.cross_entropy(logits, labels)
    return loss, {"online_probe/loss": loss, "online_probe/acc": losses.accuracy(logits, labels)}

  def probe_input(self, pooled, stages) -> jax.Array | None:
    """What the online probe reads (None without one): ``probe.features`` of the encoder output."""
    if "online_probe" not in self.networks:
      return None
    return select_features(pooled, stages, self.probe_features)

  # --- evaluation ----------------------------------------------------------------------------
  def features(self, variables: dict, images: jax.Array) -> tuple[jax.Array, dict]:
    """(pooled, stages) of the representation probes evaluate, in inference mode."""
    out, _ = self.apply("encoder", variables["params"], variables["batch_stats"], images,
                        train=False)
    return out

  def save_plots(self, variables: dict, plots_dir: pathlib.Path, images) -> list[str]:
    """Objective-specific figures for the report (e.g. the GAN's samples, an autoencoder's
    reconstructions of ``images``, a few uint8 test images (N, H, W, C)); returns their file names
    inside ``plots_dir``."""
    return []


def resolve_args(cls: type[Objective], overrides: Mapping[str, Any], name: str) -> dict:
  """The objective's defaults updated with ``config.objectives.<name>``; unknown keys are an error."""
  args = dict(cls.default_config)
  unknown = sorted(set(overrides) - set(args))
  if unknown:
    raise UserError(f"objective {name!r} has no argument(s) {', '.join(unknown)}; "
                    f"it accepts: {', '.join(sorted(args))}")
  args.update({k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
  return args


def build_objective(config, encoder, image_shape, num_classes) -> Objective:
  return OBJECTIVES[config.objective](config, encoder, image_shape, num_classes)
