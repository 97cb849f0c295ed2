"""The literature's published directions, and whether this table agrees, from its own numbers.

Each direction compares two sides on the pooled linear probe (the standard protocol): a side is a
row, or several (a family), represented by its best finished row. The verdict reads the two 95%
CIs (over pretraining seeds):

- "A beats B": *agrees* when A's interval lies wholly above B's, *disagrees* when wholly below,
  *cannot tell* when they overlap;
- "A ≈ B": *agrees* when the intervals overlap, *disagrees* when they are apart;
- a side with fewer than two seeds has no CI: *cannot tell*; a side with no finished run (or no
  row in the suite): *not yet run*.

Overlapping 95% CIs are a conservative test of a difference (two intervals can overlap a little
while the difference is significant), so "agrees" on a "beats" direction is a strong statement and
"cannot tell" a modest one. The sources' numbers come from far longer training on other datasets:
what is checked is the direction, never the size.
"""
from __future__ import annotations

import dataclasses

BETTER, SAME = "beats", "≈"
JOINT_EMBEDDING = ("contrastive", "redundancy_reduction", "teacher_student")
FIGURE = "probe_pooled"


@dataclasses.dataclass(frozen=True)
class Direction:
  claim: str
  source: str
  left: tuple[str, ...]   # row names, or "family:NAME"
  right: tuple[str, ...]
  relation: str           # BETTER or SAME


DIRECTIONS = (
    Direction("joint-embedding objectives beat reconstruction on a linear probe",
              "SimCLR (Chen et al. 2020) and BYOL (Grill et al. 2020), against autoencoder and "
              "generative baselines",
              tuple(f"family:{f}" for f in JOINT_EMBEDDING), ("family:reconstructive",), BETTER),
    Direction("alignment + uniformity ≈ InfoNCE",
              "Wang & Isola 2020, Table 1: 81.15 vs 80.46 on STL-10",
              ("align_uniform",), ("infonce",), SAME),
    Direction("crop (scale) invariance matters more than flip",
              "SimCLR (Chen et al. 2020), Fig. 5: random crop is one of the two augmentations "
              "that matter",
              ("infonce_scale",), ("infonce_flip",), BETTER),
    Direction("BYOL ≥ SimCLR",
              "solo-learn, CIFAR-10, ResNet-18, 1000 epochs: 92.58 vs 90.74",
              ("byol",), ("infonce",), BETTER),
    Direction("VICReg ≈ Barlow Twins",
              "solo-learn, CIFAR-10, ResNet-18, 1000 epochs: 92.07 vs 92.10",
              ("vicreg",), ("barlow_twins",), SAME),
)


def side(rows: list[dict], selectors: tuple[str, ...]) -> dict | None:
  """The best finished row among those ``selectors`` name: {'row', 'mean', 'ci95', 'n'}."""
  chosen = [r for r in rows
            if r["name"] in selectors or f"family:{r['family']}" in selectors]
  scored = [(r["figures"][FIGURE], r["name"]) for r in chosen if r["figures"].get(FIGURE)]
  if not scored:
    return None
  stats, name = max(scored, key=lambda s: s[0]["mean"])
  return {"row": name, "mean": stats["mean"], "ci95": stats["ci95"], "n": stats["n"]}


def verdict(left: dict | None, right: dict | None, relation: str) -> str:
  if left is None or right is None:
    return "not yet run"
  if left["ci95"] is None or right["ci95"] is None:
    return "cannot tell"  # fewer than two seeds: no interval to compare
  above = left["mean"] - left["ci95"] > right["mean"] + right["ci95"]
  below = left["mean"] + left["ci95"] < right["mean"] - right["ci95"]
  if relation == SAME:
    return "disagrees" if above or below else "agrees"
  return "agrees" if above else "disagrees" if below else "cannot tell"


def check_directions(rows: list[dict], directions=DIRECTIONS) -> list[dict]:
  """One entry per direction: the two sides as measured here and the verdict."""
  out = []
  for d in directions:
    left, right = side(rows, d.left), side(rows, d.right)
    out.append({"claim": d.claim, "source": d.source, "relation": d.relation,
                "left": left, "right": right, "verdict": verdict(left, right, d.relation)})
  return out


def describe_side(s: dict | None) -> str:
  if s is None:
    return "–"
  ci = f" ± {s['ci95']:.4f}" if s["ci95"] is not None else ""
  return f"`{s['row']}` {s['mean']:.4f}{ci} (n={s['n']})"
