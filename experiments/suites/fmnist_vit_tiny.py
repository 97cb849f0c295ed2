"""ViT-Tiny on Fashion-MNIST: the masked autoencoder beside InfoNCE and DINO, one encoder (ViT-Tiny
in 4x4 patches, 49 tokens), one budget, one seed, the same probes as the CNN tables.

    python -m ssljax.benchmark --suite=experiments/suites/fmnist_vit_tiny.py [--only=mae]

The pooled read-out is the class token (the ViT's default, the standard linear-probe protocol).
The mean of the patch tokens is the other read-out the ViT offers; it is the same checkpoint read
another way, so it is re-evaluated rather than retrained:

    cp -r runs/suites/fmnist_vit_tiny/mae/seed0 runs/vit_mean/mae
    python -m ssljax.evaluate --workdir=runs/vit_mean/mae --config.encoders.vit_tiny.pool=mean

(add ``--config.probe.random_init=False --config.probe.raw_pixel_baseline=False`` once the
untrained ViT has been read this way: its initialisation is the seed's, whatever the row).

Results: experiments/results/fmnist_vit_tiny.{md,json,png} and the README's section.
"""
import pathlib

import ml_collections

from ssljax.base_config import load_experiment
from ssljax.benchmark.suite import row

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1]
# ViT-Tiny's InfoNCE step runs at about 30 images/s on the 2-core development machine (README's
# encoder table): one epoch of InfoNCE is 34 minutes, of DINO (8 crops) over an hour. Half an epoch
# keeps the three rows and their evaluations near an hour and a half.
EPOCHS = 0.5
BATCH = 128
STEPS = int(EPOCHS * (60000 // BATCH))
WARMUP_STEPS = round(0.1 * STEPS)


def vit_recipe(lr_per_256: float, weight_decay: float, **extra) -> dict:
  """The optimizer a paper trains its ViTs with: AdamW, decoupled weight decay, its learning rate
  given per 256 images and scaled linearly to this suite's batch (every paper here does so)."""
  return dict(lr=lr_per_256 * BATCH / 256, weight_decay=weight_decay, **extra)


# Each row takes its own paper's ViT recipe: the CNN configs' AdamW (lr 2e-3, wd 1e-4) was chosen
# for the CNN. A shared lr 1e-3 was tried first: on MAE's probe validation split it read 0.7470
# against its paper's rate's 0.7790.
MAE = load_experiment(EXPERIMENTS / "fmnist_mae.py")
RECIPES = {
    # He et al. 2022, the MAE config's own: 1.5e-4 per 256, wd 0.05.
    "mae": vit_recipe(MAE.optimizer.lr * 256 / MAE.batch_size, MAE.optimizer.weight_decay),
    # Chen et al. 2021 (MoCo v3), the recipe it also trains SimCLR's ViTs with: 1.5e-4, wd 0.1.
    "infonce": vit_recipe(1.5e-4, 0.1),
    # Caron et al. 2021: 5e-4 per 256, gradients clipped at norm 3; its weight decay rises on a
    # cosine from 0.04 to 0.4 over training, which the optimizer here does not do: 0.04 held.
    "dino": vit_recipe(5e-4, 0.04, grad_clip=3.0),
}


def get_config():
  s = ml_collections.ConfigDict()
  s.title = "ViT-Tiny on Fashion-MNIST: MAE, InfoNCE and DINO at one budget"
  s.dataset = "fashion_mnist"
  s.encoder = "vit_tiny"
  s.encoder_args = dict(patch_size=4)  # 7x7 = 49 patch tokens and the class token
  s.epochs = EPOCHS
  s.budget_note = (f"Half an epoch ({STEPS} steps of {BATCH}): a ViT-Tiny step costs 7x the "
                   "quickstart CNN's (1.7 GFLOP per 28x28 view), about 30 images/s for InfoNCE on "
                   "the 2-core development machine, so one epoch of every row would take about "
                   "three hours. ViTs are known to want long schedules: these figures are where "
                   "the rows stand after 30,000 images, not what they reach.")
  s.protocol_note = ("Every row trains with its paper's ViT recipe: AdamW, the paper's "
                     "learning rate per 256 images scaled to the batch ("
                     + ", ".join(f"{name} {r['lr']:g}" for name, r in RECIPES.items())
                     + f"), cosine, {WARMUP_STEPS} warmup steps; weight decay "
                     + ", ".join(f"{name} {r['weight_decay']:g}" for name, r in RECIPES.items())
                     + "; DINO clips gradients at norm 3. Linear probes on the class token: lr and "
                     "weight decay chosen on a validation split carved from the first 10,000 "
                     "training images, refit on all 10,000 with 3 seeds, top-1 on the 10,000 test "
                     "images; kNN: k=200 on the same images.")
  s.seeds = (0,)
  s.seed_key = "seed"
  s.protocol = dict(
      batch_size=BATCH,
      optimizer=dict(name="adamw", warmup_steps=WARMUP_STEPS),
      # The class token only: a ViT's last stage flattened is 50 x 192 = 9,600 dimensions.
      probe=dict(features="pooled", extra_features=(), seeds=3, train_subset=10000,
                 raw_pixel_baseline=True, random_init=True),
      checkpoint_every=50,  # a kill loses at most a few minutes of pretraining
      wandb=dict(mode="disabled"),
  )
  s.rows = (
      row("mae", "experiments/fmnist_mae.py", "reconstructive",
          "MAE: 75% of the patches hidden, a 2-block decoder predicts their pixels", cost=0.2,
          optimizer=RECIPES["mae"]),
      row("infonce", "experiments/fmnist_infonce.py", "contrastive",
          "InfoNCE, the quickstart's views (flip + crop + brightness/contrast jitter)",
          optimizer=RECIPES["infonce"]),
      # DINO rounds its local crops down to whole patches on a ViT: 14x14 -> 12x12 (3x3 patches).
      row("dino", "experiments/fmnist_dino.py", "teacher_student",
          "DINO, 2 global + 6 local 12x12 crops, centred EMA teacher", cost=2.2,
          optimizer=RECIPES["dino"]),
  )
  # MAE, the cheapest row, at three times the budget: is a row below the untrained ViT because half
  # an epoch is too few steps? (python -m ssljax.benchmark --suite=... --curve)
  s.curve = dict(epochs=(EPOCHS, 3 * EPOCHS), seed=0, rows=("mae",))
  s.estimate = dict(images_per_s=29.0, eval_s=420.0, train_images=60000)
  return s
