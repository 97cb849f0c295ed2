"""The ONE generic train step, shared by every objective.

For each player, for each of its steps: the gradient of its loss with respect to its own parameters
only, then its optimizer's update. It knows nothing about objectives, views or devices: the step
sees the global batch and XLA partitions it over the mesh.
"""
from __future__ import annotations

from typing import Sequence

import jax
import optax

from ssljax.objectives.base import Player
from ssljax.train.state import TrainState


def make_train_step(players: Sequence[Player], txs: dict[str, optax.GradientTransformation]):
  """Returns ``train_step(state, batch) -> (state, metrics)``; jit it with ``jit_train_step``."""
  prefix = len(players) > 1  # name metrics "player/metric" only when there is more than one

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    params, batch_stats = state.params, state.batch_stats
    opt_states = dict(state.opt_states)
    metrics = {}
    for p, player in enumerate(players):
      for k in range(player.steps):
        step_key = jax.random.fold_in(key, p * 1_000 + k)
        owned = {name: params[name] for name in player.owns}

        def loss_fn(owned, player=player, step_key=step_key):
          return player.loss({**params, **owned}, batch_stats, batch, step_key)

        (total, (batch_stats, player_metrics)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(owned)
        updates, opt_states[player.name] = txs[player.name].update(
            grads, opt_states[player.name], owned)
        params = {**params, **optax.apply_updates(owned, updates)}
      player_metrics = {**player_metrics, "total_loss": total, "grad_norm": optax.global_norm(grads)}
      metrics.update({(f"{player.name}/{m}" if prefix else m): v
                      for m, v in player_metrics.items()})
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_states=opt_states)
    return new_state, metrics

  return train_step


def jit_train_step(train_step, state_sharding, batch_sharding, metrics_sharding):
  """Compiled once; the old state's buffers are donated to the new one."""
  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, metrics_sharding), donate_argnums=0)
