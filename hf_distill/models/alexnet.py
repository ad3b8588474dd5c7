"""AlexNet for small inputs, as used for cross-architecture tests in dataset distillation."""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ._common import FlatHeadNet, norm_layer, side, small_cfg

__all__ = ["SmallAlexNet"]


class SmallAlexNet(FlatHeadNet):
    """Five convs (5x5, 5x5, 3x3, 3x3, 3x3) with three 2x2 max-pools and a linear head.

    The convolutions start from He-normal weights and zero biases: with PyTorch's default initialisation and no
    normalisation layer, a model trained with L1 on soft labels gives every image the same logits for tens of epochs
    (benchmarks/plateau.py), so whether it learns at all is luck.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 32,
        net_norm: str = "none",
    ):
        """
        Args:
            num_classes: number of output logits.
            in_chans: input channels.
            img_size: side of the square input (at least 8).
            net_norm: 'none' (classic), 'instancenorm', 'batchnorm' or 'layernorm'.
        """
        size = side(img_size)
        if size < 8:
            raise ValueError(f"alexnet_small needs inputs of at least 8 px, got {size}.")
        make_norm = norm_layer(net_norm)

        def block(cin: int, cout: int, k: int, pool: bool) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=k // 2), make_norm(cout), nn.ReLU(inplace=True)] + ([nn.MaxPool2d(2)] if pool else [])

        layers = block(in_chans, 128, 5, True) + block(128, 192, 5, True) + block(192, 256, 3, False)
        layers += block(256, 192, 3, False) + block(192, 192, 3, True)
        super().__init__(nn.Sequential(*layers), 192 * (size // 8) ** 2, num_classes)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)


default_cfgs = generate_default_cfgs({"alexnet_small": small_cfg()})


@register_model
def alexnet_small(pretrained: bool = False, **kwargs) -> SmallAlexNet:
    """AlexNet for 8-64 px inputs."""
    return build_model_with_cfg(SmallAlexNet, "alexnet_small", pretrained, **kwargs)
