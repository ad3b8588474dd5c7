"""Helpers shared by the small-input model families."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "instancenorm": lambda c: nn.GroupNorm(c, c, affine=True),
    "batchnorm": lambda c: nn.BatchNorm2d(c),
    "layernorm": lambda c: nn.GroupNorm(1, c, affine=True),
    "none": lambda c: nn.Identity(),
}


def norm_layer(name: str) -> Callable[[int], nn.Module]:
    """Return the constructor of the normalisation layer called `name`."""
    if name not in NORM_LAYERS:
        raise ValueError(f"Unknown norm {name!r}; choose one of {sorted(NORM_LAYERS)}.")
    return NORM_LAYERS[name]


def side(img_size: int | Sequence[int]) -> int:
    """The side of a square input given as an int or an (H, W) pair."""
    if isinstance(img_size, int):
        return img_size
    h, w = img_size
    if h != w:
        raise ValueError(f"Only square inputs are supported, got img_size={tuple(img_size)}.")
    return int(h)


def small_cfg(**kwargs) -> dict:
    """A timm pretrained-config entry for a model without pretrained weights."""
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "fixed_input_size": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "features.0",
        "classifier": "head",
        **kwargs,
    }


class FlatHeadNet(nn.Module):
    """A `features` stack whose flattened output feeds one linear classifier (timm model API)."""

    def __init__(self, features: nn.Sequential, num_features: int, num_classes: int):
        super().__init__()
        self.features = features
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = num_features
        self.head = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
