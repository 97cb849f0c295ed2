"""The train state: one pytree holding everything a resumed run needs, so a checkpoint of it (plus
the step, which fixes the data position) continues a run exactly. Orbax saves the whole pytree, so
followers and the objective's own state are checkpointed and restored like the parameters."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from ssljax.objectives.base import Objective, init_keys
from ssljax.objectives.online_probe import NETWORK as PROBE, OnlineProbe, init_variables


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: steps done; also the data position
  params: dict             # {network_name: params}; the online probe's head is "online_probe"
  batch_stats: dict        # {network_name: BatchNorm running statistics}
  followers: dict          # {follower_name: {network_name: params}}: EMA copies, no optimizer
  objective_state: dict    # the objective's own collection (e.g. DINO's centre), no optimizer
  opt_states: dict         # {player_name: optax state}
  rng: jax.Array           # raw uint32 key; per-step keys are fold_in(rng, step)
  # Steps whose update was skipped for a NaN/Inf loss or gradient norm (see train/stopping.py):
  # {'count', 'first_step' (-1: none), 'first_what' (bit mask of which player's loss/grad_norm)}.
  nonfinite: dict


def model_collections(state: TrainState) -> dict:
  """Every collection of the state that is not optimizer bookkeeping: what the report's
  ``params_fingerprint`` covers, so two runs match only if all of it is bit-identical."""
  return {"params": state.params, "batch_stats": state.batch_stats,
          "followers": state.followers, "objective_state": state.objective_state}


def owned_networks(player, probe: OnlineProbe | None) -> tuple[str, ...]:
  """The networks a player's optimizer updates: its own, plus the online probe's head for the
  player that owns the encoder (see ``objectives/online_probe.py`` for why it joins that one)."""
  extra = (PROBE,) if probe is not None and "encoder" in player.owns else ()
  return (*player.owns, *extra)


def create_state(objective: Objective, txs: dict[str, optax.GradientTransformation], seed: int,
                 sample_images: jax.Array, probe: OnlineProbe | None) -> TrainState:
  """Initialises every network, the online probe, the followers (copies of what they follow), the
  objective's state and every player's optimizer (call under jit)."""
  init_key, train_key = init_keys(seed)
  variables = init_variables(objective, probe, init_key, sample_images)
  params = variables["params"]
  # A copy, not the same arrays: the step donates the state, and a buffer must not be donated twice.
  followers = {f.name: jax.tree.map(jnp.copy, {n: params[n] for n in f.follows})
               for f in objective.followers()}
  opt_states: dict[str, Any] = {}
  for player in objective.players():
    opt_states[player.name] = txs[player.name].init(
        {n: params[n] for n in owned_networks(player, probe)})
  nonfinite = {"count": jnp.zeros((), jnp.int32), "first_step": jnp.full((), -1, jnp.int32),
               "first_what": jnp.zeros((), jnp.int32)}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables["batch_stats"], followers=followers,
                    objective_state=objective.init_state(variables), opt_states=opt_states, rng=train_key,
                    nonfinite=nonfinite)
