import torch

from hf_distill.preprocessing import Preprocessing


def _pixels(n=600, c=3, side=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, side, side, generator=g) * 200
    return (base + torch.rand(n, c, side, side, generator=g) * 55).to(torch.uint8)  # correlated channels


def test_zca_round_trip_and_whitening():
    pixels = _pixels()
    zca = Preprocessing.fit(pixels, zca=True)
    inputs = zca(pixels)
    assert torch.allclose(zca.invert(inputs), pixels.float() / 255, atol=1e-4)
    assert torch.allclose(inputs.flatten(1).mean(0), torch.zeros(pixels[0].numel()), atol=1e-4)
    exact = Preprocessing.fit(pixels, zca=True, eps=1e-8)  # eps -> 0: the whitened covariance is the identity
    cov = torch.cov(exact(pixels).flatten(1).double().T)
    assert torch.allclose(cov, torch.eye(len(cov), dtype=cov.dtype), atol=1e-3)
    assert torch.cov((pixels.flatten(1).double() / 255).T).diagonal().mean() < 0.1  # raw data was far from it


def test_zca_survives_state_dict():
    zca = Preprocessing.fit(_pixels(), zca=True)
    again = Preprocessing.from_state_dict(zca.state_dict())
    x = _pixels(10, seed=1)
    assert again.zca and torch.equal(again(x), zca(x))


def test_normalize_round_trip():
    pixels = _pixels()
    norm = Preprocessing.fit(pixels)
    inputs = norm(pixels)
    assert torch.allclose(inputs.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(inputs.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
    assert torch.allclose(norm.invert(inputs), pixels.float() / 255, atol=1e-5)
