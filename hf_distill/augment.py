"""Differentiable Siamese Augmentation (DSA), batched and seedable.

One op group is drawn per call from the strategy; its parameters are drawn per sample from a
`torch.Generator`, so a call is reproducible and the same `DSAParams` can be replayed on another
batch ("siamese"). Every op is differentiable with respect to the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
BRIGHTNESS = 0.5  # additive shift, U(-0.5, 0.5)
SATURATION = (0.0, 2.0)  # multiplicative, U(0, 2)
CONTRAST = (0.5, 1.5)  # multiplicative, U(0.5, 1.5)
CROP_RATIO = 0.125  # translation of up to 12.5% of the side
CUTOUT_RATIO = 0.5  # a square of half the side is zeroed
FLIP_PROB = 0.5
SCALE_RATIO = 1.2  # per-axis scale in [1/1.2, 1.2]
ROTATE_DEGREES = 15.0


@dataclass
class DSAParams:
    """One sampled augmentation: the op group and its per-sample parameters (CPU tensors)."""

    op: str
    values: dict[str, torch.Tensor]


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Split an underscore-separated strategy like 'color_crop_flip' and check its op names."""
    ops = tuple(op for op in strategy.split("_") if op)
    unknown = sorted(set(ops) - set(_SAMPLERS))
    if not ops or unknown:
        raise ValueError(f"Invalid DSA strategy {strategy!r}: unknown ops {unknown}; "
                         f"use '_'-separated names from {sorted(_SAMPLERS)}.")
    return ops


def sample_dsa(n: int, side: int, generator: torch.Generator, strategy: str = DEFAULT_STRATEGY) -> DSAParams:
    """Draw one op group from `strategy` and its parameters for `n` samples of `side` x `side` pixels."""
    ops = parse_strategy(strategy)
    op = ops[int(torch.randint(len(ops), (1,), generator=generator))]
    return DSAParams(op, _SAMPLERS[op](n, side, generator))


def select_rows(params: DSAParams, rows: torch.Tensor) -> DSAParams:
    """The parameters of the samples at `rows` (per-sample values are indexed; shared ones, 0-d, are kept)."""
    return DSAParams(params.op, {k: v[rows] if v.dim() > 0 else v for k, v in params.values.items()})


def apply_dsa(x: torch.Tensor, params: DSAParams) -> torch.Tensor:
    """Apply sampled DSA parameters to a batch `x` of shape [N, C, H, W]."""
    values = {k: v.to(x.device) for k, v in params.values.items()}
    return _APPLIERS[params.op](x, **values)


def dsa(x: torch.Tensor, generator: torch.Generator, strategy: str = DEFAULT_STRATEGY) -> torch.Tensor:
    """Augment `x` with one freshly sampled DSA op group."""
    return apply_dsa(x, sample_dsa(x.shape[0], x.shape[-1], generator, strategy))


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _sample_color(n: int, side: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"brightness": _uniform(n, -BRIGHTNESS, BRIGHTNESS, g), "saturation": _uniform(n, *SATURATION, g),
            "contrast": _uniform(n, *CONTRAST, g)}


def _sample_crop(n: int, side: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    shift = int(side * CROP_RATIO + 0.5)
    return {"shift": torch.randint(-shift, shift + 1, (n, 2), generator=g), "side": torch.tensor(side)}


def _sample_cutout(n: int, side: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    size = int(side * CUTOUT_RATIO + 0.5)
    return {"corner": torch.randint(0, side + (1 - size % 2), (n, 2), generator=g) - size // 2, "size": torch.tensor(size)}


def _sample_flip(n: int, side: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"flip": torch.rand(n, generator=g) < FLIP_PROB}


def _sample_scale(n: int, side: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"scale": _uniform(2 * n, 1 / SCALE_RATIO, SCALE_RATIO, g).view(n, 2)}


def _sample_rotate(n: int, side: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"angle": _uniform(n, -ROTATE_DEGREES, ROTATE_DEGREES, g) * math.pi / 180}


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _color(x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    x = x + brightness.view(-1, 1, 1, 1)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * saturation.view(-1, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast.view(-1, 1, 1, 1) + mean


def _crop(x: torch.Tensor, shift: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift.float() * 2 / max(int(side) - 1, 1)
    return _warp(x, theta)


def _cutout(x: torch.Tensor, corner: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(x.shape[-2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, -1)
    top, left = corner[:, 0].view(-1, 1, 1), corner[:, 1].view(-1, 1, 1)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def _scale(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale[:, 0], scale[:, 1]
    return _warp(x, theta)


def _rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1), torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
    return _warp(x, theta)


_SAMPLERS = {"color": _sample_color, "crop": _sample_crop, "cutout": _sample_cutout, "flip": _sample_flip,
             "scale": _sample_scale, "rotate": _sample_rotate}
_APPLIERS = {"color": _color, "crop": _crop, "cutout": _cutout, "flip": _flip, "scale": _scale, "rotate": _rotate}
