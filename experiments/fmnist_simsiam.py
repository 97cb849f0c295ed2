"""SimSiam (Chen & He 2021) on Fashion-MNIST with the quickstart's CNN and views: one encoder, the
prediction of each view pulled towards the other view's projection behind a stop-gradient,
(D(p1, sg z2) + D(p2, sg z1)) / 2 with D the negative cosine.

    python -m ssljax.pretrain --config=experiments/fmnist_simsiam.py --workdir=runs/simsiam
    python -m ssljax.pretrain --config=experiments/fmnist_simsiam.py:smoke --workdir=/tmp/simsiam_smoke
    python -m ssljax.pretrain --config=experiments/fmnist_simsiam.py:no_predictor --workdir=runs/simsiam_no_pred

``no_predictor`` is the paper's broken configuration: without the predictor the representation
collapses, and the report flags it. It also drops the BatchNorm that ends the projector, which
otherwise holds every dimension's variance at 1 and slows the collapse out of the collapse
watch's sight (``--config.objectives.simsiam.predictor=False`` alone keeps it).
Everything else is the quickstart's (fmnist_infonce.py), so the pair compares the formulas; the
objective's arguments are its defaults (ssljax/objectives/teacher_student.py), where their
validation figures are.
"""
from ssljax.base_config import parse_arg, quickstart_with_objective


def get_config(arg=None):
  words = parse_arg(arg)
  c = quickstart_with_objective(__file__, "simsiam", ",".join(words - {"no_predictor"}))
  if "smoke" in words:
    c.objectives.simsiam.predictor_hidden_dims = (64,)
  if "no_predictor" in words:
    c.objectives.simsiam.update(predictor=False, output_bn=False)
    c.wandb.name = "fmnist_simsiam_no_predictor"
  return c
