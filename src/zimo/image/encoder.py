"""The embedded default image tower: a small residual CNN whose output lives in the vector
space of the frozen MiniLM text encoder (LiT, Zhai et al. 2022, with the roles swapped: the
text tower is the locked one, because it is the only pretrained tower that installs offline).

The shape follows the CPU-friendly recipe for small images (conv + BN + ReLU, two convs per
stage with a residual, max-pool between stages, global pooling): few layers, wide channels,
so oneDNN's convolutions stay busy on two cores. Labels are scored by the cosine between the
image vector and each label's prompt embedding, times a learned temperature, so a label is
just a text, and a free-text query ranks images with the same vectors.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# Per-channel statistics of natural photos (the usual ImageNet values): fixed, so the encoder
# needs no statistics of its own data to run, and the ONNX graph carries them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class _Stage(nn.Module):
    """conv -> pool -> (conv, conv) + residual: one resolution step."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = _conv_bn(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.res = nn.Sequential(_conv_bn(cout, cout), _conv_bn(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.down(x))
        return x + self.res(x)


class ConvTower(nn.Module):
    """uint8-range float images (N, 3, H, W) -> features (N, width[-1])."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255.0)
        self.stem = _conv_bn(3, widths[0] // 2)
        chans = [widths[0] // 2, *widths]
        self.stages = nn.Sequential(*[_Stage(a, b) for a, b in zip(chans, chans[1:], strict=False)])
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = self.stages(self.stem(x))
        # Max and mean pooling together: max keeps small objects, mean keeps texture.
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


class ImageTextEncoder(nn.Module):
    """The image tower plus a projection into the text encoder's space (L2-normalised)."""

    def __init__(self, embed_dim: int, widths: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        self.tower = ConvTower(widths)
        self.proj = nn.Linear(2 * self.tower.dim, embed_dim, bias=False)
        # CLIP's initial temperature (1/0.07); learned, clamped to 100 as CLIP does.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.tower(x)).float(), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


class LinearHeadCNN(nn.Module):
    """The same tower with a plain linear classifier: the from-scratch supervised baseline."""

    def __init__(self, n_classes: int, widths: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        self.tower = ConvTower(widths)
        self.head = nn.Linear(2 * self.tower.dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tower(x)).float()
