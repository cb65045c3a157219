"""The trainable bridge from visual features to the text model's width."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


class VisualProjection(nn.Module):
    """Linear + LayerNorm from ``in_dim`` visual features to ``out_dim`` text-embedding width,
    plus an image-index embedding so that several images per example stay distinguishable.

    ``forward(features)`` takes (B, images, tokens, in_dim) and returns (B, images * tokens, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, max_images: int = 1):
        super().__init__()
        self.in_dim, self.out_dim, self.max_images = in_dim, out_dim, max_images
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.image_index = nn.Embedding(max_images, out_dim)
        nn.init.zeros_(self.image_index.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, images, tokens, _ = features.shape
        if images > self.max_images:
            raise InputError(f"{images} images per example, but the projection was built for at most {self.max_images}")
        x = self.norm(self.linear(features.to(self.linear.weight.dtype)))
        x = x + self.image_index.weight[:images].unsqueeze(0).unsqueeze(2)
        return x.reshape(batch, images * tokens, self.out_dim)

    def shape_dict(self) -> dict:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "max_images": self.max_images}
