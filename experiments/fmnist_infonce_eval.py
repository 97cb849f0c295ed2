"""The quickstart (InfoNCE, small CNN, Fashion-MNIST) with the whole evaluation protocol switched on:
linear probe over 3 seeds with validation-chosen lr/wd, kNN, online probe, alignment/uniformity of
encoder and projector, the flip/scale invariance probe, and freeze-vs-fine-tune transfer to
scikit-learn's digits (8x8 -> 28x28). Same training as experiments/fmnist_infonce.py.

    python -m ssljax.pretrain --config=experiments/fmnist_infonce_eval.py --workdir=runs/eval
    python -m ssljax.evaluate --workdir=runs/eval            # re-run the evaluation from the checkpoint
    python -m ssljax.pretrain --config=experiments/fmnist_infonce_eval.py:smoke --workdir=/tmp/smoke

Measured (issue 5), on a 2-core CPU shared with other jobs, with a reduced budget of
``--config.steps=300`` (1.3 epochs of the default 3) — see the results in the issue note.
"""
from ssljax.base_config import sibling_experiment


def get_config(arg=None):
  c = sibling_experiment(__file__, "fmnist_infonce", arg)  # probe.seeds = 3 (smoke: 2)
  c.transfer.dataset = "digits"  # a different real labelled dataset, resized to 28x28x1
  c.wandb.name = "fmnist_infonce_eval"
  return c
