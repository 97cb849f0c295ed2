"""Optimizers from config: SGD-momentum, Adam, AdamW, LARS; linear warmup then cosine decay.

Weight decay never touches biases or BatchNorm scales (anything with fewer than 2 dimensions), the
standard choice for SimCLR-style training.
"""
from __future__ import annotations

import jax
import optax

from ssljax.errors import UserError


def _decay_mask(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)


def learning_rate_schedule(opt, total_steps: int) -> optax.Schedule:
  warmup = min(int(opt.warmup_steps), max(total_steps - 1, 0))
  if opt.schedule == "constant":
    return optax.join_schedules([optax.linear_schedule(0.0, opt.lr, max(warmup, 1)),
                                 optax.constant_schedule(opt.lr)], [warmup])
  if opt.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, opt.lr, warmup, max(total_steps, warmup + 1),
                                              end_value=opt.lr * opt.get("final_lr_fraction", 0.0))
  raise UserError(f"optimizer.schedule {opt.schedule!r} unknown; valid: cosine, constant")


def build_optimizer(opt, total_steps: int) -> optax.GradientTransformation:
  lr = learning_rate_schedule(opt, total_steps)
  wd = opt.weight_decay
  if opt.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(wd, _decay_mask),
                     optax.sgd(lr, momentum=opt.momentum, nesterov=opt.get("nesterov", False)))
  elif opt.name == "adam":
    tx = optax.chain(optax.add_decayed_weights(wd, _decay_mask), optax.adam(lr, b1=opt.b1))
  elif opt.name == "adamw":
    tx = optax.adamw(lr, b1=opt.b1, weight_decay=wd, mask=_decay_mask)
  elif opt.name == "lars":
    tx = optax.lars(lr, weight_decay=wd, weight_decay_mask=_decay_mask,
                    trust_ratio_mask=_decay_mask, momentum=opt.momentum)
  else:
    raise UserError(f"optimizer.name {opt.name!r} unknown; valid: sgd, adam, adamw, lars")
  if opt.get("grad_clip", 0):
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip), tx)
  return tx
