import pytest
import torch

from hf_distill.augment import DSAParams, apply_dsa, dsa, parse_strategy, sample_dsa

OPS = ["color", "crop", "cutout", "flip", "scale", "rotate"]


@pytest.mark.parametrize("op", OPS)
def test_each_op_keeps_shape_and_passes_gradients(op):
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    params = sample_dsa(6, 16, torch.Generator().manual_seed(0), op)
    y = apply_dsa(x, params)
    assert y.shape == x.shape and params.op == op
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("op", OPS)
def test_replayed_params_apply_one_fixed_transform_to_any_batch(op):
    x, y = torch.rand(2, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    params = sample_dsa(5, 16, torch.Generator().manual_seed(1), op)
    # every op is affine in the pixels, so replaying one fixed transform T gives T(x) - T(y) = T(x - y) - T(0)
    assert torch.allclose(apply_dsa(x, params) - apply_dsa(y, params),
                          apply_dsa(x - y, params) - apply_dsa(torch.zeros_like(x), params), atol=1e-5)
    # sample i gets the transform of its own parameters, whatever the batch around it
    for i in range(5):
        own = DSAParams(op, {k: v[i:i + 1] if v.ndim else v for k, v in params.values.items()})
        assert torch.allclose(apply_dsa(x[i:i + 1], own), apply_dsa(x, params)[i:i + 1], atol=1e-6)
    other = sample_dsa(5, 16, torch.Generator().manual_seed(2), op)
    assert not torch.allclose(apply_dsa(x, other), apply_dsa(x, params), atol=1e-3)


def test_same_seed_same_augmentation_and_batch_varies_per_sample():
    x = torch.rand(8, 3, 16, 16)
    a = dsa(x, torch.Generator().manual_seed(3))
    b = dsa(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    ops_seen = {sample_dsa(4, 16, torch.Generator().manual_seed(s)).op for s in range(40)}
    assert ops_seen == set(OPS)
    params = sample_dsa(8, 16, torch.Generator().manual_seed(0), "rotate")
    assert params.values["angle"].unique().numel() == 8


def test_ops_do_what_they_say():
    x = torch.rand(4, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    params = sample_dsa(4, 16, g, "flip")
    flipped = params.values["flip"]
    y = apply_dsa(x, params)
    assert torch.allclose(y[flipped], x[flipped].flip(3), atol=1e-5) and torch.equal(y[~flipped], x[~flipped])
    cut = apply_dsa(torch.ones(4, 1, 16, 16), sample_dsa(4, 16, g, "cutout"))
    assert ((cut == 0).flatten(1).sum(1) > 0).all() and ((cut == 0).flatten(1).sum(1) <= 64).all()
    angle = sample_dsa(4, 16, g, "rotate").values["angle"]
    assert angle.abs().max() <= 15 * torch.pi / 180


def test_strategy_validation():
    assert parse_strategy("color_flip") == ("color", "flip")
    with pytest.raises(ValueError, match="unknown ops"):
        parse_strategy("color_blur")
