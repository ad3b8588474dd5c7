"""ConvNet-D, the standard backbone of dataset-distillation papers.

D x [conv3x3(width) -> norm -> ReLU -> AvgPool2] -> Linear. With width 128, instance norm and
depth 3 on 32x32 RGB inputs with 10 classes it has exactly 320,010 parameters.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ._common import FlatHeadNet, norm_layer, side, small_cfg

__all__ = ["ConvNet"]


class ConvNet(FlatHeadNet):
    """Plain stack of conv-norm-relu-pool blocks with a linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 32,
        net_width: int = 128,
        net_depth: int = 3,
        net_norm: str = "instancenorm",
    ):
        """
        Args:
            num_classes: number of output logits.
            in_chans: input channels.
            img_size: side of the square input; fixes the size of the linear head.
            net_width: channels of every conv layer.
            net_depth: number of conv blocks, each halving the resolution.
            net_norm: 'instancenorm', 'batchnorm', 'layernorm' or 'none'.
        """
        size = side(img_size)
        if size >> net_depth < 1:
            raise ValueError(f"net_depth={net_depth} halves a {size}px input below 1 pixel; use a smaller depth.")
        make_norm = norm_layer(net_norm)
        layers: list[nn.Module] = []
        channels = in_chans
        for _ in range(net_depth):
            layers += [nn.Conv2d(channels, net_width, 3, padding=1), make_norm(net_width), nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            channels = net_width
            size //= 2
        super().__init__(nn.Sequential(*layers), net_width * size * size, num_classes)


default_cfgs = generate_default_cfgs({
    "convnet3": small_cfg(),
    "convnet4": small_cfg(input_size=(3, 64, 64)),
})


def _create_convnet(variant: str, pretrained: bool = False, **kwargs) -> ConvNet:
    return build_model_with_cfg(ConvNet, variant, pretrained, **kwargs)


@register_model
def convnet3(pretrained: bool = False, **kwargs) -> ConvNet:
    """ConvNet-3 (width 128, instance norm), the distillation backbone for 32px inputs."""
    kwargs.setdefault("net_depth", 3)
    return _create_convnet("convnet3", pretrained, **kwargs)


@register_model
def convnet4(pretrained: bool = False, **kwargs) -> ConvNet:
    """ConvNet-4 (width 128, instance norm), the distillation backbone for 64px inputs."""
    kwargs.setdefault("net_depth", 4)
    return _create_convnet("convnet4", pretrained, **kwargs)
