"""ResNet-18 for small inputs: timm's ResNet with a 3x3 stride-1 stem, no max-pool and PyTorch's default init."""

from __future__ import annotations

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet

from ._common import norm_layer, small_cfg

__all__ = ["SmallResNet"]


class SmallResNet(ResNet):
    """timm ResNet whose stem keeps the input resolution (3x3 conv, stride 1, no max-pool), initialised like the
    ResNet-18 of the distillation benchmarks (DC, DSA, DM, MTT): PyTorch's default init, no zeroed last norm.

    timm's own init (Kaiming fan-out convs, each block's last norm at zero) left models trained on 10 to 100 images
    near chance after 300 epochs, probably because behind instance norm conv weights of about 6x the default
    variance divide the effective learning rate by about as much.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, net_norm: str = "instancenorm", img_size=None, **kwargs):
        """
        Args:
            num_classes: number of output logits.
            in_chans: input channels.
            net_norm: 'instancenorm', 'batchnorm', 'layernorm' or 'none'.
            img_size: accepted for a uniform interface; the global pool makes any size work.
            **kwargs: passed to timm's ResNet (block, layers, ...).
        """
        make_norm = norm_layer(net_norm)
        super().__init__(num_classes=num_classes, in_chans=in_chans, norm_layer=lambda c, **_: make_norm(c), **kwargs)
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.BatchNorm2d)):
                module.reset_parameters()


default_cfgs = generate_default_cfgs({"resnet18_small": small_cfg(first_conv="conv1", classifier="fc")})


@register_model
def resnet18_small(pretrained: bool = False, **kwargs) -> SmallResNet:
    """ResNet-18 (instance norm) with a 3x3 stride-1 stem and no max-pool, for small inputs."""
    return build_model_with_cfg(SmallResNet, "resnet18_small", pretrained, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs)
