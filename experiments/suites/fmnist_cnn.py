"""The objectives table on Fashion-MNIST: every objective with an experiment config, the quickstart
CNN, one pretraining budget, three pretraining seeds, the same probes; the untrained encoder, raw
pixels and supervised cross-entropy as controls.

    python -m ssljax.benchmark --suite=experiments/suites/fmnist_cnn.py [--only=infonce,vicreg]
    python -m ssljax.benchmark --suite=experiments/suites/fmnist_cnn.py --curve
    python -m ssljax.benchmark --suite=experiments/suites/fmnist_cnn.py --check=infonce:0

Results: experiments/results/fmnist_cnn.{md,json,png} and the README's results section. A new
objective is one more ``row(...)`` line below (its experiment config first), e.g.

    row("byol", "experiments/fmnist_byol.py", "teacher_student", "BYOL, EMA teacher"),

Families: contrastive, redundancy_reduction, teacher_student, reconstructive, adversarial,
supervised. The literature's directions look rows up by name (``infonce``, ``align_uniform``,
``infonce_scale``, ``infonce_flip``, ``byol``, ``vicreg``, ``barlow_twins``) and by family.
"""
import ml_collections

from ssljax.benchmark.suite import row

# The budget, one value. The quickstart trains 3 epochs, but 16 rows x 3 seeds at 3 epochs would
# take about 12 hours on the 2-core development machine; at 1 epoch the runner estimates 5.7
# (printed before it starts), filled in over several sittings. The learning curve
# (--curve: 1, 3 and 10 epochs) shows how far each family's best row has got at this budget.
EPOCHS = 1.0
BATCH = 128  # every row: the quickstart's (chosen on validation), so rows take equal step counts
# 10% of the run as linear warmup: the configs' 200 steps assume 3 epochs, and would be 43% of a
# 1-epoch run (468 steps of 128 images).
WARMUP_STEPS = round(0.1 * EPOCHS * 60000 // BATCH)


def get_config():
  s = ml_collections.ConfigDict()
  s.title = "Objectives on Fashion-MNIST: one CNN, one budget, three seeds"
  s.dataset = "fashion_mnist"
  s.encoder = "cnn"
  s.encoder_args = dict(widths=(32, 64, 128, 256))  # the quickstart's CNN
  s.epochs = EPOCHS
  s.budget_note = ("The quickstart trains 3 epochs; the whole table at 3 would take about 12 h on "
                   "the 2-core development machine, so rows are compared at 1 and the learning "
                   "curve shows where they stand at 3 and 10.")
  s.protocol_note = ("Linear probes: lr and weight decay chosen on a validation split carved from "
                     "the first 10,000 training images, refit on all 10,000 with 3 seeds, top-1 on "
                     "the 10,000 test images; kNN: k=200 on the same images.")
  s.seeds = (0, 1, 2)
  s.seed_key = "seed"  # config.seed: the initialisation and the data order
  s.protocol = dict(
      batch_size=BATCH,
      optimizer=dict(warmup_steps=WARMUP_STEPS),
      # The standard protocol reads the pooled output; the flattened final map keeps the spatial
      # layout pooling throws away. A probe on 10,000 training images keeps the evaluation near 3
      # minutes a run (with the untrained control beside it).
      probe=dict(features="pooled", extra_features=("last_stage",), seeds=3, train_subset=10000,
                 raw_pixel_baseline=True, random_init=True),
      checkpoint_every=100,  # a kill loses at most about a minute of pretraining
      wandb=dict(mode="disabled"),
  )
  s.rows = (
      row("infonce", "experiments/fmnist_infonce.py", "contrastive",
          "InfoNCE (SimCLR), the quickstart: flip + crop + brightness/contrast jitter"),
      row("infonce_flip", "experiments/fmnist_infonce_flip.py", "contrastive",
          "InfoNCE, views differ by a flip only"),
      row("infonce_scale", "experiments/fmnist_infonce_scale.py", "contrastive",
          "InfoNCE, views differ by a random-resized crop only"),
      row("infonce_flip_scale", "experiments/fmnist_infonce.py", "contrastive",
          "InfoNCE, flip + crop, no jitter",
          objectives={"infonce": {"invariances": ("flip", "scale")}}),
      # The quickstart's views, so the pair with `infonce` compares the two losses (as Wang &
      # Isola do, at equal augmentations).
      row("align_uniform", "experiments/fmnist_align_uniform.py", "contrastive",
          "alignment + uniformity, the quickstart's views",
          views={"scale": (0.2, 1.0)},
          objectives={"align_uniform": {"invariances": ("flip", "scale", "color_jitter")}}),
      row("vicreg", "experiments/fmnist_vicreg.py", "redundancy_reduction", "VICReg"),
      row("barlow_twins", "experiments/fmnist_barlow_twins.py", "redundancy_reduction",
          "Barlow Twins"),
      row("lejepa", "experiments/fmnist_lejepa.py", "redundancy_reduction", "LeJEPA (SIGReg)"),
      # cost: the step's compute relative to InfoNCE's (a teacher forward pass for the EMA
      # objectives; DINO's 6 local crops), for the estimate only.
      row("byol", "experiments/fmnist_byol.py", "teacher_student",
          "BYOL, EMA target, predictor", cost=1.3),
      row("simsiam", "experiments/fmnist_simsiam.py", "teacher_student",
          "SimSiam, stop-gradient, no EMA", cost=1.1),
      row("moco_v3", "experiments/fmnist_moco_v3.py", "teacher_student",
          "MoCo v3, momentum key encoder, global negatives", cost=1.3),
      row("dino", "experiments/fmnist_dino.py", "teacher_student",
          "DINO, 2 global + 6 local crops, centred EMA teacher", cost=2.0),
      # cost: pretraining time per epoch relative to InfoNCE's, for the estimate only (from the
      # former 0.64-epoch table: AE 337 s, DAE 361, GAN 996, supervised 174 against InfoNCE's 270).
      row("autoencoder", "experiments/fmnist_autoencoder.py", "reconstructive",
          "autoencoder, BCE reconstruction", cost=1.25),
      row("denoising_autoencoder", "experiments/fmnist_denoising_autoencoder.py",
          "reconstructive", "denoising autoencoder, 25% of pixels masked", cost=1.35),
      row("gan", "experiments/fmnist_gan.py", "adversarial",
          "DCGAN, the discriminator's trunk probed", cost=3.7,
          optimizer={"warmup_steps": 0}),  # its config's constant-rate DCGAN recipe
      row("supervised", "experiments/fmnist_supervised.py", "supervised",
          "cross-entropy on the labels (the reference)", cost=0.65),
  )
  # Objectives with a config but no row here, and why (the test that every objective has a row
  # reads this).
  s.not_in_table = dict(mae="needs a ViT encoder; this table's rows share the quickstart CNN "
                            "(MAE's row is in fmnist_vit_tiny.py)")
  # The learning curve: InfoNCE and the best row of each family (rows=() chooses them from the
  # table), one seed, each budget a run of its own.
  s.curve = dict(epochs=(1.0, 3.0, 10.0), seed=0, rows=())
  # The estimate's prior, refined by every run measured here: the quickstart CNN pretrains at about
  # 310 images/s on the idle development machine (README), and the 12 minutes per 3-epoch
  # run leave about 3 for an evaluation.
  s.estimate = dict(images_per_s=310.0, eval_s=180.0, train_images=60000)
  return s
