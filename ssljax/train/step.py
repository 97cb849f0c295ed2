"""The ONE generic train step, shared by every objective.

For each player, for each of its steps: the gradient of its loss with respect to its own parameters
only, then its optimizer's update. It knows nothing about objectives, views or devices: the step
sees the global batch and XLA partitions it over the mesh.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from ssljax.objectives.base import Player
from ssljax.train.state import TrainState
from ssljax.train.stopping import GRAD_BIT, LOSS_BIT


def make_train_step(players: Sequence[Player], txs: dict[str, optax.GradientTransformation]):
  """Returns ``train_step(state, batch) -> (state, metrics)``; jit it with ``jit_train_step``."""
  prefix = len(players) > 1  # name metrics "player/metric" only when there is more than one

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    params, batch_stats = state.params, state.batch_stats
    opt_states = dict(state.opt_states)
    metrics = {}
    bad_bits = jnp.zeros((), jnp.int32)
    for p, player in enumerate(players):
      for k in range(player.steps):
        step_key = jax.random.fold_in(key, p * 1_000 + k)
        owned = {name: params[name] for name in player.owns}

        def loss_fn(owned, player=player, step_key=step_key):
          return player.loss({**params, **owned}, batch_stats, batch, step_key)

        (total, (new_stats, player_metrics)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(owned)
        grad_norm = optax.global_norm(grads)
        updates, new_opt = txs[player.name].update(grads, opt_states[player.name], owned)
        # A NaN/Inf loss or gradient norm never reaches the state: a select keeps the old values
        # (fused into the update, no host sync) and the step is counted; the loop stops or goes on.
        ok = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        keep = lambda new, old, ok=ok: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
        params = {**params, **keep(optax.apply_updates(owned, updates), owned)}
        opt_states[player.name] = keep(new_opt, opt_states[player.name])
        batch_stats = keep(new_stats, batch_stats)
        bad_bits = bad_bits | ((jnp.where(jnp.isfinite(total), 0, LOSS_BIT)
                                | jnp.where(jnp.isfinite(grad_norm), 0, GRAD_BIT)) << (2 * p))
      player_metrics = {**player_metrics, "total_loss": total, "grad_norm": grad_norm}
      metrics.update({(f"{player.name}/{m}" if prefix else m): v
                      for m, v in player_metrics.items()})
    nonfinite = state.nonfinite
    first = (nonfinite["count"] == 0) & (bad_bits != 0)
    nonfinite = {"count": nonfinite["count"] + (bad_bits != 0).astype(jnp.int32),
                 "first_step": jnp.where(first, state.step, nonfinite["first_step"]),
                 "first_what": jnp.where(first, bad_bits, nonfinite["first_what"])}
    metrics["nonfinite_steps"] = nonfinite["count"]
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_states=opt_states, nonfinite=nonfinite)
    return new_state, metrics

  return train_step


def jit_train_step(train_step, state_sharding, batch_sharding, metrics_sharding):
  """Compiled once; the old state's buffers are donated to the new one."""
  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, metrics_sharding), donate_argnums=0)
