import pytest
import timm
import torch

import hf_distill  # noqa: F401  (registers the models)
from hf_distill.models import SMALL_INPUT_MODELS, check_model_name, create_model


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_convnet3_cifar10_has_spec_parameter_count():
    assert n_params(timm.create_model("convnet3", num_classes=10, in_chans=3)) == 320_010


def test_convnet_width_depth_norm_are_configurable():
    # depth 4 at 64 px keeps a 4x4 map: 3*128*9+128 + 3*(128*128*9+128) + 4*256 (norms) + 128*16*10+10
    assert n_params(timm.create_model("convnet4", num_classes=10, in_chans=3)) == 467_850
    narrow = timm.create_model("convnet3", num_classes=10, in_chans=1, net_width=32, net_norm="none", img_size=28)
    assert n_params(narrow) == (1 * 32 * 9 + 32) + 2 * (32 * 32 * 9 + 32) + (32 * 3 * 3 * 10 + 10)
    assert narrow(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert isinstance(timm.create_model("convnet3", net_norm="batchnorm").features[1], torch.nn.BatchNorm2d)


@pytest.mark.parametrize("name", SMALL_INPUT_MODELS)
@pytest.mark.parametrize("in_chans,side", [(3, 32), (1, 8)])
def test_small_input_models_forward_backward(name, in_chans, side):
    if name == "convnet4" and side == 8:
        side = 16
    model = create_model(name, num_classes=7, in_chans=in_chans, img_size=side)
    x = torch.randn(2, in_chans, side, side, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert x.grad.abs().sum() > 0


def test_resnet18_small_keeps_resolution_in_stem():
    model = create_model("resnet18_small", num_classes=10, in_chans=3, img_size=32)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4  # 32 / 8, not 32 / 32


def test_resnet18_small_has_pytorch_default_init():
    """Like the benchmarks' ResNet-18, not timm's: conv weights of PyTorch's default scale, no zeroed last norm."""
    model = create_model("resnet18_small", num_classes=10, in_chans=3, img_size=32)
    conv = model.layer3[1].conv2
    default_std = 1 / (3 * conv.weight[0].numel()) ** 0.5  # kaiming_uniform(a=sqrt(5)): var = 1 / (3 fan_in)
    assert conv.weight.std().item() == pytest.approx(default_std, rel=0.05)
    assert all(bool((block.bn2.weight == 1).all()) for layer in (model.layer1, model.layer4) for block in layer)


def test_alexnet_small_starts_off_the_plateau():
    """He-normal convs: at init its logits differ across images (PyTorch's default init gives them a spread of about
    0.001 on these inputs, which L1 training does not escape for tens of epochs: benchmarks/plateau.py)."""
    torch.manual_seed(0)
    model = create_model("alexnet_small", num_classes=10, in_chans=3, img_size=32)
    images = 0.25 * torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # ZCA images' scale
    with torch.no_grad():
        assert model(images).std(0).mean().item() > 0.03


def test_any_timm_model_is_accepted():
    assert create_model("resnet10t", num_classes=10, in_chans=1, img_size=32)(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="convnet3"):
        check_model_name("convnet33")
