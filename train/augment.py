"""Batched, on-device augmentation of 28x28 digits: geometry, elastic warps, stroke width and blur.

Everything runs as a few tensor ops on the whole batch (on the GPU when training there), so the
data never waits on a CPU worker. Photos that reach the model went through digitcloud.inputs,
which crops, scales and centres the ink as MNIST did; what it cannot undo is a pen thicker or
thinner than MNIST's and the softness of a blurred photo. Those two are augmented here.

Elastic warps (Simard et al., 2003: a random displacement field, smoothed so that neighbouring
pixels move together) bend a stroke the way another hand would. They are off by default
(``elastic_p = 0`` draws no random numbers, so recipes without them train exactly as before).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    rotate_deg: float = 12.0  # uniform in ±rotate_deg
    scale: float = 0.12  # uniform in 1 ± scale
    shear_deg: float = 8.0  # horizontal shear (slant), uniform in ±shear_deg
    shift_px: float = 2.5  # uniform in ±shift_px along each axis
    stroke_p: float = 0.5  # share of digits whose pen is made thicker or thinner
    thicker_px: int = 1  # the most a thicker pen adds to a stroke's width, in pixels (1 or more)
    blur_p: float = 0.25  # share of digits softened by a 3x3 Gaussian
    elastic_p: float = 0.0  # share of digits warped elastically (0: off)
    elastic_px: float = 1.0  # standard deviation of an elastic displacement, in pixels
    elastic_sigma: float = 4.0  # its smoothness: the Gaussian's sigma, in pixels


def _uniform(b: int, lo: float, hi: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(b, generator=generator, device=device) * (hi - lo) + lo


def elastic_field(
    b: int, size: int, aug: Augmentation, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``[B, size, size, 2]`` displacements in ``affine_grid`` units, zero for digits not chosen.

    White noise per pixel and axis, smoothed by a separable Gaussian and scaled so that a
    displacement's standard deviation is ``elastic_px`` pixels (away from the border, where the
    zero padding damps it: MNIST's border is background anyway).
    """
    radius = math.ceil(3 * aug.elastic_sigma)
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * aug.elastic_sigma**2))
    g = g / g.sum()
    noise = torch.randn(b, 2, size, size, generator=generator, device=device)
    smooth = F.conv2d(noise, g.view(1, 1, 1, -1).expand(2, 1, 1, -1), padding=(0, radius), groups=2)
    smooth = F.conv2d(smooth, g.view(1, 1, -1, 1).expand(2, 1, -1, 1), padding=(radius, 0), groups=2)
    # White noise of unit variance through the 2-D kernel g gᵀ keeps a standard deviation of Σg².
    chosen = torch.rand(b, generator=generator, device=device) < aug.elastic_p
    scale = aug.elastic_px / g.square().sum() * 2 / size  # pixels → affine_grid's [-1, 1] units
    return (smooth * scale * chosen[:, None, None, None]).permute(0, 2, 3, 1)


def geometry(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, scale, slant and shift per digit, and an elastic warp for a share
    ``elastic_p`` of them, in one ``grid_sample``; the border is 0."""
    b, device = x.shape[0], x.device
    angle = _uniform(b, -aug.rotate_deg, aug.rotate_deg, generator, device) * math.pi / 180
    scale = _uniform(b, 1 - aug.scale, 1 + aug.scale, generator, device)
    shear = torch.tan(_uniform(b, -aug.shear_deg, aug.shear_deg, generator, device) * math.pi / 180)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2/28 of the width.
    shift = aug.shift_px * 2 / x.shape[-1]
    tx, ty = _uniform(b, -shift, shift, generator, device), _uniform(b, -shift, shift, generator, device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # theta maps output coordinates to input ones: rotation/scale, then a horizontal shear.
    theta = torch.stack(
        [torch.stack([cos, -sin + shear * cos, tx], 1), torch.stack([sin, cos + shear * sin, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if aug.elastic_p > 0:
        grid = grid + elastic_field(b, x.shape[-1], aug, generator, device).to(grid.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def stroke_width(x: torch.Tensor, p: float, generator: torch.Generator, thicker_px: int = 1) -> torch.Tensor:
    """For a share ``p`` of digits, blend toward a thicker or a thinner pen by a random amount.

    The dilation or erosion runs at twice the resolution: a 3x3 erosion there shrinks the stroke
    by up to half a pixel on each side (a full 3x3 erosion at 28x28 would erase MNIST's thinner
    strokes); the dilation, ``2 * thicker_px + 1`` wide, grows it by up to ``thicker_px`` pixels
    in all (a marker's stroke can be twice MNIST's).
    """
    b, device = x.shape[0], x.device
    chosen = torch.rand(b, generator=generator, device=device) < p
    thicker = torch.rand(b, generator=generator, device=device) < 0.5
    amount = torch.rand(b, generator=generator, device=device) * chosen
    fine = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    grow = 2 * thicker_px + 1
    dilated = F.avg_pool2d(F.max_pool2d(fine, grow, stride=1, padding=thicker_px), 2)
    eroded = F.avg_pool2d(-F.max_pool2d(-fine, 3, stride=1, padding=1), 2)
    target = torch.where(thicker[:, None, None, None], dilated, eroded)
    return torch.lerp(x, target, amount[:, None, None, None])


def blur(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """For a share ``p`` of digits, blend toward a 3x3 Gaussian blur (sigma 0.8) by a random amount."""
    b, device = x.shape[0], x.device
    amount = torch.rand(b, generator=generator, device=device) * (torch.rand(b, generator=generator, device=device) < p)
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0], device=device) / (2 * 0.8**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).to(x.dtype)
    blurred = F.conv2d(x, kernel[None, None], padding=1)
    return torch.lerp(x, blurred, amount[:, None, None, None])


def augment(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """``x`` is ``[B, 1, 28, 28]`` in [0, 1] (light ink on dark); returns the same shape and range."""
    x = geometry(x, aug, generator)
    if aug.stroke_p > 0:
        x = stroke_width(x, aug.stroke_p, generator, aug.thicker_px)
    if aug.blur_p > 0:
        x = blur(x, aug.blur_p, generator)
    return x.clamp_(0, 1)
