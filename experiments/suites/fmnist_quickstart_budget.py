"""The joint-embedding objectives at the quickstart's own budget: the quickstart CNN, 3 epochs of
batch 128 on the 2 (fake) CPU devices of a 2-core machine, one pretraining seed, the same probes.

    python -m ssljax.benchmark --suite=experiments/suites/fmnist_quickstart_budget.py [--only=byol]

Where ``fmnist_cnn.py`` compares every objective over three seeds at 1 epoch (what the table can
afford), this suite answers what each of InfoNCE, the redundancy-reduction family (VICReg, Barlow
Twins, LeJEPA) and the teacher-student family (BYOL, SimSiam, MoCo v3, DINO) reaches when it is
given the quickstart's 3 epochs, beside the untrained encoder measured inside every run. One seed:
a row's spread over pretraining seeds is the 1-epoch table's business; the figures here carry the
linear probe's CI over its own seeds only.

Results: experiments/results/fmnist_quickstart_budget.{md,json,png} and the README's section.
"""
import pathlib

import ml_collections

from ssljax.base_config import load_experiment
from ssljax.benchmark.suite import rows_from

# The budget is the quickstart's, read from its config so the two cannot drift apart.
QUICKSTART = load_experiment(pathlib.Path(__file__).resolve().parents[1] / "fmnist_infonce.py")
ROWS = ("infonce", "vicreg", "barlow_twins", "lejepa", "byol", "simsiam", "moco_v3", "dino")


def get_config():
  s = ml_collections.ConfigDict()
  s.title = "Joint-embedding objectives at the quickstart's budget (3 epochs, one seed)"
  s.dataset = "fashion_mnist"
  s.encoder = QUICKSTART.encoder
  s.encoder_args = dict(widths=tuple(QUICKSTART.encoders[QUICKSTART.encoder].widths))
  s.epochs = float(QUICKSTART.epochs)
  steps = int(QUICKSTART.epochs * (60000 // QUICKSTART.batch_size))  # whole batches per epoch
  s.budget_note = (f"The quickstart's budget: {QUICKSTART.epochs:g} epochs of batch "
                   f"{QUICKSTART.batch_size} ({steps:,} steps), every row with the warmup of its "
                   f"experiment config.")
  s.protocol_note = ("Linear probes: lr and weight decay chosen on a validation split carved from "
                     "the first 10,000 training images, refit on all 10,000 with 3 seeds, top-1 on "
                     "the 10,000 test images; kNN: k=200 on the same images; the teacher probe is "
                     "the same probe on the EMA teacher's pooled output.")
  s.seeds = (0,)
  s.seed_key = "seed"
  s.protocol = dict(
      batch_size=QUICKSTART.batch_size,
      # The flattened final map is the quickstart's second representation; the 10,000-image probe
      # keeps a run's evaluation at a few minutes beside its untrained control.
      probe=dict(features="pooled", extra_features=("last_stage",), seeds=3, train_subset=10000,
                 raw_pixel_baseline=True, random_init=True),
      checkpoint_every=200,
      wandb=dict(mode="disabled"),
  )
  # The 1-epoch table's rows of these objectives: their configs and costs have one owner.
  s.rows = rows_from(pathlib.Path(__file__).with_name("fmnist_cnn.py"), ROWS)
  s.estimate = dict(images_per_s=360.0, eval_s=180.0, train_images=60000)
  return s
