"""What every objective is: networks around an encoder, views built from a batch, and the things
the generic train step (``ssljax.train.step``) updates:

- **players**: a set of networks (top-level keys of ``params``) with its own loss, optimizer and
  number of steps per round. Every objective but the GAN has one, ``main`` (the default
  :meth:`Objective.players`); the GAN has a discriminator (k1 steps) and a generator (k2 steps).
- **followers**: copies of some networks that are never differentiated but follow them by an
  exponential moving average after the round's gradient updates, ``teacher <- m * teacher +
  (1 - m) * student``, with ``m`` a schedule of the step (``schedules.py``): BYOL, MoCo, DINO.
- **state**: a collection of non-parameter arrays the objective updates itself (DINO's centre, a
  teacher's BatchNorm statistics): its loss receives the current value and returns the new one.
  No optimizer touches it; it is checkpointed with the rest of the train state.

An objective is built from explicit inputs (:class:`ObjectiveInputs`: its own argument section,
the views config, the data's shape and classes, the run's length...), never the whole config, so
what reaches a loss can be followed by reading; it validates its own arguments
(:meth:`Objective.check_args`) and says what to try when its loss goes non-finite
(:meth:`Objective.nonfinite_hints`). It never touches devices, optimizers or the update rule.

The online probe is not the objective's: the harness trains it on ``stop_gradient`` of the
``probe_input`` the encoder's player returns (``online_probe.py``).

Variables are kept as ``{'params': {network: ...}, 'batch_stats': {network: ...}}`` with one entry
per network, so "the parameters of player P" is simply a set of network names.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax.errors import UserError
from ssljax.registry import Registry

OBJECTIVES: Registry[type["Objective"]] = Registry("objective")


def register_objective(name: str):
  """Registers the class under ``name`` and records the name on it (messages, check_args keys)."""
  def add(cls):
    cls.name = name
    return OBJECTIVES.register(name)(cls)
  return add


@dataclasses.dataclass(frozen=True)
class ObjectiveInputs:
  """Everything an objective is built from; ``objective_inputs`` fills it from a config."""
  args: Mapping[str, Any]        # config.objectives.<name>, its defaults filled in and checked
  views: Mapping[str, Any]       # config.views: the invariances' strengths
  image_shape: tuple[int, int, int]
  num_classes: int               # 0: the data has no labels
  total_steps: int               # the run's length: every schedule is a function of the step
  batch_size: int                # global, over every device
  optimizer: Any                 # config.optimizer (a ConfigDict): the main player's
  micro_batch_size: int = 0      # > 0: batch-coupled losses embed this many images at a time
  probe_features: str = "pooled"  # config.online_probe_features: what ``probe_input`` selects


class LossInputs(NamedTuple):
  """What a player's loss reads besides the parameters it is differentiated with respect to."""
  batch: dict                    # 'images' (B, H, W, C) uint8, 'labels' (B,) int (-1: none)
  key: jax.Array                 # this player-step's randomness
  step: jax.Array                # int32, steps done before this one: the schedules' argument
  batch_stats: dict              # {network: BatchNorm running statistics}
  followers: dict                # {follower: {network: params}}: read-only in a loss
  state: dict                    # the objective's own collection (``init_state``)


class LossOutput(NamedTuple):
  """The auxiliary outputs of a player's loss (the loss itself is the other half of the pair)."""
  batch_stats: dict              # updated running statistics (or the ones it got)
  metrics: dict                  # {name: scalar}; the step names them "<player>/<name>"
  state: dict | None = None      # the objective's new state; None = unchanged
  # The encoder's player returns what the online probe reads (``Objective.probe_input`` of one
  # view); the step refuses an encoder player without it, so no objective can forget the probe.
  probe_input: jax.Array | None = None


# loss(params, inputs) -> (loss, LossOutput)
LossFn = Callable[[dict, LossInputs], tuple[jax.Array, LossOutput]]


@dataclasses.dataclass(frozen=True)
class Player:
  name: str
  owns: tuple[str, ...]  # the networks whose parameters this player updates
  loss: LossFn
  optimizer: ml_collections.ConfigDict
  steps: int = 1


@dataclasses.dataclass(frozen=True)
class Follower:
  """``name``'s copy of ``follows`` (network names), moved towards them after every round:
  ``copy <- m * copy + (1 - m) * params`` with ``m = momentum(step)``. Starts equal to them."""
  name: str
  follows: tuple[str, ...]
  momentum: Callable[[jax.Array], jax.Array]


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
  """Base class. Subclasses set ``default_config``, build networks into ``self.networks`` and
  define ``init`` and a loss; ``players`` defaults to one player owning every network, and
  ``followers``, ``init_state``, ``features`` have defaults too."""

  name: ClassVar[str] = ""  # set by register_objective
  default_config: ClassVar[dict[str, Any]] = {}
  needs_labels: ClassVar[bool] = False  # True: training reads batch["labels"] (supervised)
  micro_batching: ClassVar[bool] = False  # True: the loss honours micro_batch_size
  view_specs: tuple = ()  # the views per image it draws (``data.views.ViewSpec``), if any

  def __init__(self, inputs: ObjectiveInputs, encoder: nn.Module):
    problems = self.check_args(inputs.args)
    if problems:
      raise UserError("; ".join(f"objectives.{self.name}.{p}" for p in problems))
    self.inputs = inputs
    self.args = inputs.args
    self.image_shape = tuple(inputs.image_shape)
    self.num_classes = inputs.num_classes
    self.total_steps = int(inputs.total_steps)
    self.networks: dict[str, nn.Module] = {"encoder": encoder}
    if inputs.micro_batch_size and not self.micro_batching:
      raise UserError(f"objective {self.name!r} does not support micro_batch_size; "
                      "micro-batching (gradient caching) is for batch-coupled losses: "
                      f"{', '.join(n for n in OBJECTIVES.names() if OBJECTIVES[n].micro_batching)}")

  # --- arguments -----------------------------------------------------------------------------
  @classmethod
  def check_args(cls, args: Mapping[str, Any]) -> list[str]:
    """Problems with the (defaults-filled) arguments, one phrase each starting with the argument's
    name; ``check_config`` gathers them with every other problem before any data loads."""
    return []

  @classmethod
  def encoder_problem(cls, encoder_name: str, encoder_cls: type) -> str | None:
    """Why this objective cannot train the registered encoder ``encoder_name``, or None (MAE
    needs a ViT); checked with every other config problem, before data loads."""
    return None

  @classmethod
  def nonfinite_hints(cls, args: Mapping[str, Any]) -> list[str]:
    """What to try, besides the optimizer's settings, when this objective's loss goes NaN/Inf."""
    return []

  @property
  def views_per_image(self) -> int:
    """Encoder passes per dataset image (InfoNCE: 2 views); throughput figures count views."""
    return max(1, len(self.view_specs))

  # --- variables -----------------------------------------------------------------------------
  def init(self, key: jax.Array, images: jax.Array) -> dict:
    """Variables for every network; subclasses extend with their own heads (``fold_in(key, i)``).
    The encoder takes the first of ``split(key, 2)``: the online probe takes the second."""
    variables = {"params": {}, "batch_stats": {}}
    self.init_network(variables, "encoder", jax.random.split(key, 2)[0], images)
    return variables

  def init_network(self, variables: dict, name: str, key: jax.Array, *inputs) -> Any:
    """Initialises network ``name`` into ``variables`` (in place) and returns its output."""
    out, new = self.networks[name].init_with_output(
        {"params": key, "dropout": key}, *inputs, train=False)
    variables["params"][name] = new["params"]
    if "batch_stats" in new:
      variables["batch_stats"][name] = new["batch_stats"]
    return out

  def init_state(self, variables: dict) -> dict:
    """The objective's own collection at step 0 (e.g. DINO's centre, an EMA teacher's BatchNorm
    statistics, which start as copies of the student's in ``variables``); {} = none."""
    return {}

  def apply(self, name: str, params: dict, batch_stats: dict, *inputs, train: bool,
            key: jax.Array | None = None):
    """Runs network ``name``; returns (output, batch_stats with its running statistics updated).
    ``params`` maps network names to parameters: a follower's collection works the same way."""
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
    """One player owning every network, with the run's optimizer and ``self.loss``."""
    return [Player("main", tuple(self.networks), self.loss, self.inputs.optimizer)]

  def followers(self) -> list[Follower]:
    return []

  def loss(self, params: dict, inputs: LossInputs) -> tuple[jax.Array, LossOutput]:
    raise NotImplementedError

  def probe_input(self, pooled, stages) -> jax.Array:
    """What the online probe reads of an encoder output: ``online_probe_features`` of it."""
    return select_features(pooled, stages, self.inputs.probe_features)

  # --- evaluation ----------------------------------------------------------------------------
  def features(self, variables: dict, images: jax.Array) -> tuple[jax.Array, dict]:
    """(pooled, stages) of the representation probes evaluate, in inference mode."""
    out, _ = self.apply("encoder", variables["params"], variables["batch_stats"], images,
                        train=False)
    return out

  def teacher_variables(self, variables: dict) -> dict | None:
    """The EMA teacher's networks laid out as ``features`` reads them (``{'params',
    'batch_stats'}``), from a state's ``{'params', 'batch_stats', 'followers',
    'objective_state'}``, for the report's teacher probe; None: the objective has no teacher."""
    return None

  def image_grids(self, variables: dict, images) -> dict[str, tuple[dict, str]]:
    """Objective-specific figures for the report, as data (the evaluator draws and saves them:
    objectives never import ``evaluate``): {file name: ({row label: (N, H, W, C) floats in [0, 1]},
    title)}, e.g. the GAN's samples, an autoencoder's reconstructions of ``images`` (a few uint8
    test images (N, H, W, C))."""
    return {}


def resolve_args(cls: type[Objective], overrides: Mapping[str, Any]) -> tuple[dict, list[str]]:
  """(the objective's defaults updated with ``config.objectives.<name>``, problems: unknown keys
  and whatever its ``check_args`` finds, each phrase starting with the argument's name)."""
  args = dict(cls.default_config)
  unknown = sorted(set(overrides) - set(args))
  if unknown:
    return args, [f"{', '.join(unknown)}: no such argument; {cls.name!r} accepts: "
                  f"{', '.join(sorted(args))}"]
  args.update({k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
  return args, cls.check_args(args)


def objective_inputs(config, image_shape: Sequence[int], num_classes: int,
                     total_steps: int) -> ObjectiveInputs:
  """The inputs of ``config.objective`` from a run's config: the one place that reads it."""
  cls = OBJECTIVES[config.objective]
  args, problems = resolve_args(cls, (config.get("objectives") or {}).get(config.objective) or {})
  if problems:
    raise UserError("; ".join(f"objectives.{cls.name}.{p}" for p in problems))
  return ObjectiveInputs(
      args=args, views=config.views, image_shape=tuple(image_shape), num_classes=num_classes,
      total_steps=int(total_steps), batch_size=int(config.batch_size), optimizer=config.optimizer,
      micro_batch_size=int(config.get("micro_batch_size", 0)),
      probe_features=config.get("online_probe_features", "pooled"))


def build_objective(config, encoder, image_shape, num_classes, total_steps) -> Objective:
  return OBJECTIVES[config.objective](
      objective_inputs(config, image_shape, num_classes, total_steps), encoder)
