"""The train state: one pytree holding everything a resumed run needs, so a checkpoint of it (plus
the step, which fixes the data position) continues a run exactly."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from ssljax.objectives.base import Objective, init_keys


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: steps done; also the data position
  params: dict             # {network_name: params}
  batch_stats: dict        # {network_name: BatchNorm running statistics}
  opt_states: dict         # {player_name: optax state}
  rng: jax.Array           # raw uint32 key; per-step keys are fold_in(rng, step)
  # Steps whose update was skipped for a NaN/Inf loss or gradient norm (see train/stopping.py):
  # {'count', 'first_step' (-1: none), 'first_what' (bit mask of which player's loss/grad_norm)}.
  nonfinite: dict


def create_state(objective: Objective, txs: dict[str, optax.GradientTransformation], seed: int,
                 sample_images: jax.Array) -> TrainState:
  """Initialises every network and every player's optimizer (call under jit)."""
  init_key, train_key = init_keys(seed)
  variables = objective.init(init_key, sample_images)
  params = variables["params"]
  opt_states: dict[str, Any] = {}
  for player in objective.players():
    opt_states[player.name] = txs[player.name].init({n: params[n] for n in player.owns})
  nonfinite = {"count": jnp.zeros((), jnp.int32), "first_step": jnp.full((), -1, jnp.int32),
               "first_what": jnp.zeros((), jnp.int32)}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables["batch_stats"], opt_states=opt_states, rng=train_key,
                    nonfinite=nonfinite)
