"""PyTorch eager reference of the same InfoNCE train step, for throughput comparisons in one run.

Same model (the small CNN or a CIFAR-stem ResNet-18, SimCLR projector, online linear probe), same
loss (NT-Xent over 2B views), same optimizer (AdamW), same on-the-fly views (flip + random resized
crop). Needs the optional extra: pip install -e '.[bench]'.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from timing import median_seconds


def conv_bn_relu(cin, cout, stride=1):
  return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
  def __init__(self, channels, widths=(32, 64, 128, 128), pool_after=(0, 1)):
    super().__init__()
    layers, cin = [], channels
    for i, w in enumerate(widths):
      layers += conv_bn_relu(cin, w)
      if i in pool_after:
        layers.append(nn.MaxPool2d(2))
      cin = w
    self.body = nn.Sequential(*layers)
    self.dim = cin

  def forward(self, x):
    fmap = self.body(x)
    return fmap.mean((2, 3)), fmap.flatten(1)


class BasicBlock(nn.Module):
  def __init__(self, cin, cout, stride):
    super().__init__()
    self.body = nn.Sequential(*conv_bn_relu(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                              nn.BatchNorm2d(cout))
    self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

  def forward(self, x):
    return F.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
  def __init__(self, channels):
    super().__init__()
    layers, cin = conv_bn_relu(channels, 64), 64
    for i, n in enumerate((2, 2, 2, 2)):
      for j in range(n):
        cout = 64 * 2 ** i
        layers.append(BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1))
        cin = cout
    self.body = nn.Sequential(*layers)
    self.dim = cin

  def forward(self, x):
    fmap = self.body(x)
    return fmap.mean((2, 3)), fmap.flatten(1)


def views(x, scale=(0.4, 1.0), ratio=(3 / 4, 4 / 3)):
  """Per-example horizontal flip + random resized crop, vectorised with affine_grid."""
  b = x.shape[0]
  area = torch.empty(b).uniform_(*scale)
  aspect = torch.exp(torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1])))
  h = torch.sqrt(area / aspect).clamp(max=1.0)
  w = torch.sqrt(area * aspect).clamp(max=1.0)
  cy = (torch.rand(b) * (1 - h) + h / 2) * 2 - 1
  cx = (torch.rand(b) * (1 - w) + w / 2) * 2 - 1
  flip = torch.where(torch.rand(b) < 0.5, -1.0, 1.0)
  theta = torch.zeros(b, 2, 3)
  theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
  grid = F.affine_grid(theta, list(x.shape), align_corners=False)
  return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


def nt_xent(z1, z2, t):
  z = F.normalize(torch.cat([z1, z2]), dim=1)
  logits = z @ z.T / t
  logits.fill_diagonal_(float("-inf"))
  n = z1.shape[0]
  targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
  return F.cross_entropy(logits, targets)


def measure(encoder: str, batch: int, input_shape, steps: int = 10, threads: int | None = None,
            cnn_widths=(32, 64, 128, 128)) -> dict:
  """Median seconds per InfoNCE step (2*batch views) of the eager PyTorch reference."""
  if threads:
    torch.set_num_threads(threads)
  h, w, c = input_shape
  net = SmallCNN(c, tuple(cnn_widths)) if encoder == "cnn" else ResNet18(c)
  with torch.no_grad():
    _, flat = net(torch.zeros(2, c, h, w))
  projector = nn.Sequential(nn.Linear(net.dim, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                            nn.Linear(512, 128))
  probe = nn.Linear(flat.shape[1], 10)
  params = [*net.parameters(), *projector.parameters(), *probe.parameters()]
  opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
  images = torch.rand(batch, c, h, w)
  labels = torch.randint(0, 10, (batch,))

  def step():
    v = torch.cat([views(images), views(images)])
    pooled, flat = net(v)
    z = projector(pooled)
    loss = nt_xent(z[:batch], z[batch:], 0.5) + F.cross_entropy(probe(flat[:batch].detach()), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  median = median_seconds(step, steps)
  return {"median_step_s": median, "views_per_s": 2 * batch / median, "threads": torch.get_num_threads()}


def gemm_gflop_s(threads: int | None = None, n: int = 2048, repeats: int = 5) -> float:
  """PyTorch's float32 n x n x n matrix-product rate (the reference's own ceiling on this CPU)."""
  if threads:
    torch.set_num_threads(threads)
  a, b = torch.randn(n, n), torch.randn(n, n)
  return 2 * n ** 3 / median_seconds(lambda: a @ b, repeats) / 1e9
