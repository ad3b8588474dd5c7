"""Model families registered with timm, and the one factory the rest of hf_distill uses."""

from __future__ import annotations

import difflib

import timm
import torch
import torch.nn as nn

from . import alexnet, convnet, resnet, vgg  # noqa: F401  (registers the models with timm)
from .alexnet import SmallAlexNet
from .convnet import ConvNet
from .resnet import SmallResNet
from .vgg import SmallVGG

SMALL_INPUT_MODELS = ("convnet3", "convnet4", "resnet18_small", "vgg11_small", "alexnet_small")


def check_model_name(name: str) -> None:
    """Raise a ValueError that suggests close names when `name` is not a timm model."""
    if name.startswith(("hf-hub:", "local-dir:")) or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown model {name!r}: it is not registered with timm.{hint} "
                     f"hf_distill adds {', '.join(SMALL_INPUT_MODELS)}.")


def check_model(name: str, num_classes: int, in_chans: int, img_size: int, **kwargs) -> None:
    """Raise a ValueError naming the flags when model `name` cannot be built with `kwargs` or cannot take one
    `in_chans` x `img_size`^2 input."""
    check_model_name(name)
    try:
        with torch.no_grad():
            create_model(name, num_classes, in_chans, img_size, **kwargs).eval()(torch.zeros(1, in_chans, img_size, img_size))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"Model {name!r} does not work on {in_chans}x{img_size}x{img_size} images with --model_kwargs "
                         f"{kwargs}: {str(err).rstrip('.')}. Fix --model_kwargs, or pick another --model or --resolution.") from err


def create_model(name: str, num_classes: int, in_chans: int, img_size: int, **kwargs) -> nn.Module:
    """Build an untrained timm model `name` for `in_chans` x `img_size`^2 inputs and `num_classes` outputs."""
    check_model_name(name)
    if name in SMALL_INPUT_MODELS:
        kwargs["img_size"] = img_size
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


__all__ = ["ConvNet", "SmallAlexNet", "SmallResNet", "SmallVGG", "SMALL_INPUT_MODELS", "check_model", "check_model_name",
           "create_model"]
