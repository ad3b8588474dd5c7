"""Input preprocessing: per-channel mean/std normalisation or ZCA whitening, both invertible."""

from __future__ import annotations

from dataclasses import dataclass

import torch

ZCA_EPS = 0.1
_FIT_CHUNK = 4096
_FIT_CHUNK_ELEMENTS = 2**24  # ZCA: at most 128 MB of float64 per chunk, whatever the image size
_SUM_CHUNK_ELEMENTS = 2**22  # mean/std: 32 MB of int64 per chunk; integer sums do not depend on the chunking


@dataclass
class Preprocessing:
    """Maps uint8 pixels [N, C, H, W] to model inputs and back.

    Without ZCA: (x / 255 - mean) / std per channel. With ZCA: whitening of the flattened x / 255
    (kornia convention, `eps` added to the eigenvalues); mean/std are then 0/1.
    """

    mean: torch.Tensor
    std: torch.Tensor
    zca_mean: torch.Tensor | None = None
    zca_matrix: torch.Tensor | None = None
    zca_inverse: torch.Tensor | None = None

    @property
    def zca(self) -> bool:
        return self.zca_matrix is not None

    @classmethod
    def fit(cls, pixels: torch.Tensor, zca: bool = False, eps: float = ZCA_EPS) -> Preprocessing:
        """Fit mean/std (exact integer sums) or ZCA (float64) on uint8 training pixels, chunk by chunk (pixels may be
        memory-mapped)."""
        n, c = pixels.shape[:2]
        if not zca:
            total = torch.zeros(c, dtype=torch.int64)
            squares = torch.zeros(c, dtype=torch.int64)
            for chunk in pixels.split(max(1, _SUM_CHUNK_ELEMENTS // pixels[0].numel())):
                x = chunk.transpose(0, 1).reshape(c, -1).long()
                total += x.sum(1)
                squares += x.square().sum(1)
            count = n * pixels[0, 0].numel()
            mean = total.double() / (255 * count)
            std = (squares.double() / (255**2 * count) - mean.square()).clamp_min(1e-12).sqrt()
            return cls(mean.float(), std.float())
        rows = max(1, min(_FIT_CHUNK, _FIT_CHUNK_ELEMENTS // pixels[0].numel()))
        dim = pixels[0].numel()
        total = torch.zeros(dim, dtype=torch.float64)
        outer = torch.zeros(dim, dim, dtype=torch.float64)
        for chunk in pixels.split(rows):
            x = chunk.double().div(255).flatten(1)
            total += x.sum(0)
            outer += x.T @ x
        mean = total / n
        cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        scale = (eigenvalues.clamp_min(0) + eps).sqrt()
        whiten = (eigenvectors / scale) @ eigenvectors.T
        colour = (eigenvectors * scale) @ eigenvectors.T
        return cls(torch.zeros(c), torch.ones(c), mean.float(), whiten.float(), colour.float())

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0, 255] float) pixels -> float32 model inputs, on the pixels' device."""
        x = pixels.float().div(255)
        if self.zca:
            flat = (x.flatten(1) - self.zca_mean.to(x.device)) @ self.zca_matrix.to(x.device)
            return flat.view_as(x)
        return (x - self.mean.to(x.device).view(1, -1, 1, 1)) / self.std.to(x.device).view(1, -1, 1, 1)

    def invert(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model inputs -> pixel values in [0, 1] (not clipped)."""
        if self.zca:
            flat = inputs.flatten(1) @ self.zca_inverse.to(inputs.device) + self.zca_mean.to(inputs.device)
            return flat.view_as(inputs)
        return inputs * self.std.to(inputs.device).view(1, -1, 1, 1) + self.mean.to(inputs.device).view(1, -1, 1, 1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to store (safetensors-ready)."""
        tensors = {"mean": self.mean, "std": self.std}
        if self.zca:
            tensors.update(zca_mean=self.zca_mean, zca_matrix=self.zca_matrix, zca_inverse=self.zca_inverse)
        return {f"preprocessing.{k}": v.contiguous() for k, v in tensors.items()}

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor]) -> Preprocessing:
        """Inverse of `state_dict`."""
        get = lambda k: tensors.get(f"preprocessing.{k}")  # noqa: E731
        return cls(get("mean"), get("std"), get("zca_mean"), get("zca_matrix"), get("zca_inverse"))

    def describe(self) -> dict:
        """A JSON-able summary for configs and cards."""
        if self.zca:
            return {"type": "zca", "eps": ZCA_EPS, "input_scale": "x / 255"}
        return {"type": "normalize", "mean": self.mean.tolist(), "std": self.std.tolist(), "input_scale": "x / 255"}
