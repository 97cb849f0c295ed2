"""The ONE generic train step, shared by every objective.

One round: for each player, for each of its steps, the gradient of its loss with respect to its own
networks only, then its optimizer's update; the online probe's loss is added to the loss of the
player that owns the encoder (``objectives/online_probe.py`` says why). After the round, each
follower moves towards what it follows by EMA, with the momentum of the step (BYOL's order: the
target update right after ``optax.apply_updates``). The objective's own state is whatever its
losses return. The step knows nothing about objectives, views or devices: it sees the global batch
and XLA partitions it over the mesh.

Metric names follow ``ssljax.metric_names``: ``<player>/<metric>``, ``online_probe/<metric>``,
``<follower>/momentum``, and the run's ``nonfinite_steps``.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from ssljax.metric_names import metric_name
from ssljax.objectives.base import Follower, LossInputs, Player
from ssljax.objectives.online_probe import OnlineProbe
from ssljax.train.state import TrainState, owned_networks
from ssljax.train.stopping import GRAD_BIT, LOSS_BIT


def make_train_step(players: Sequence[Player], txs: dict[str, optax.GradientTransformation], *,
                    followers: Sequence[Follower], probe: OnlineProbe | None):
  """Returns ``train_step(state, batch) -> (state, metrics)``; jit it with ``jit_train_step``.
  ``followers`` and ``probe`` are keyword-only and required, so no caller drops them by accident
  (``loop.compiled_train_step`` passes the experiment's)."""

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    params, batch_stats, objective_state = state.params, state.batch_stats, state.objective_state
    opt_states = dict(state.opt_states)
    metrics = {}
    bad_bits = jnp.zeros((), jnp.int32)
    for p, player in enumerate(players):
      trains_probe = probe is not None and "encoder" in player.owns
      for k in range(player.steps):
        step_key = jax.random.fold_in(key, p * 1_000 + k)
        owned = {name: params[name] for name in owned_networks(player, probe)}
        inputs = LossInputs(batch=batch, key=step_key, step=state.step, batch_stats=batch_stats,
                            followers=state.followers, state=objective_state)

        def loss_fn(owned, player=player, inputs=inputs, trains_probe=trains_probe):
          full = {**params, **owned}
          loss, out = player.loss(full, inputs)
          if not trains_probe:
            return loss, (out, {})
          if out.probe_input is None:
            raise TypeError(f"player {player.name!r} owns the encoder but its loss returned no "
                            "probe_input (LossOutput.probe_input): the online probe needs it")
          probe_loss, probe_metrics = probe.loss(full, out.probe_input, batch["labels"])
          return loss + probe_loss, (out, probe_metrics)

        (total, (out, probe_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(owned)
        grad_norm = optax.global_norm(grads)
        updates, new_opt = txs[player.name].update(grads, opt_states[player.name], owned)
        # A NaN/Inf loss or gradient norm never reaches the state: a select keeps the old values
        # (fused into the update, no host sync) and the step is counted; the loop stops or goes on.
        ok = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        keep = lambda new, old, ok=ok: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
        params = {**params, **keep(optax.apply_updates(owned, updates), owned)}
        opt_states[player.name] = keep(new_opt, opt_states[player.name])
        batch_stats = keep(out.batch_stats, batch_stats)
        if out.state is not None:
          objective_state = keep(out.state, objective_state)
        bad_bits = bad_bits | ((jnp.where(jnp.isfinite(total), 0, LOSS_BIT)
                                | jnp.where(jnp.isfinite(grad_norm), 0, GRAD_BIT)) << (2 * p))
      player_metrics = {**out.metrics, "total_loss": total, "grad_norm": grad_norm}
      metrics.update({metric_name(player.name, m): v for m, v in player_metrics.items()})
      metrics.update(probe_metrics)
    new_followers = dict(state.followers)
    for follower in followers:  # after the whole round, from the updated parameters
      m = follower.momentum(state.step)
      new_followers[follower.name] = {
          name: jax.tree.map(lambda t, s, m=m: m * t + (1 - m) * s,
                             state.followers[follower.name][name], params[name])
          for name in follower.follows}
      metrics[metric_name(follower.name, "momentum")] = m
    nonfinite = state.nonfinite
    first = (nonfinite["count"] == 0) & (bad_bits != 0)
    nonfinite = {"count": nonfinite["count"] + (bad_bits != 0).astype(jnp.int32),
                 "first_step": jnp.where(first, state.step, nonfinite["first_step"]),
                 "first_what": jnp.where(first, bad_bits, nonfinite["first_what"])}
    metrics["nonfinite_steps"] = nonfinite["count"]
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              followers=new_followers, objective_state=objective_state,
                              opt_states=opt_states, nonfinite=nonfinite)
    return new_state, metrics

  return train_step


def jit_train_step(train_step, state_sharding, batch_sharding, metrics_sharding):
  """Compiled once; the old state's buffers are donated to the new one."""
  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, metrics_sharding), donate_argnums=0)
