"""VGG-11 for small inputs: 3x3 convs with optional norm, max-pools while the map is >= 2 px."""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ._common import FlatHeadNet, norm_layer, side, small_cfg

__all__ = ["SmallVGG"]

VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class SmallVGG(FlatHeadNet):
    """VGG with a single linear classifier, sized for 8-64 px inputs."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 32,
        layout: Sequence[int | str] = VGG11_LAYOUT,
        net_norm: str = "instancenorm",
    ):
        """
        Args:
            num_classes: number of output logits.
            in_chans: input channels.
            img_size: side of the square input.
            layout: conv widths, with 'M' for a 2x2 max-pool (skipped once the map is 1 px).
            net_norm: 'instancenorm', 'batchnorm', 'layernorm' or 'none'.
        """
        size = side(img_size)
        make_norm = norm_layer(net_norm)
        layers: list[nn.Module] = []
        channels = in_chans
        for item in layout:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), make_norm(int(item)), nn.ReLU(inplace=True)]
            channels = int(item)
        super().__init__(nn.Sequential(*layers), channels * size * size, num_classes)


default_cfgs = generate_default_cfgs({"vgg11_small": small_cfg()})


@register_model
def vgg11_small(pretrained: bool = False, **kwargs) -> SmallVGG:
    """VGG-11 with instance norm and one linear head, for small inputs."""
    return build_model_with_cfg(SmallVGG, "vgg11_small", pretrained, **kwargs)
