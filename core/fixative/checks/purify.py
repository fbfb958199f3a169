"""Purifications: the cheap preprocessing published attacks use to strip protective perturbations.

Every function here is plain: it takes images (B, 3, H, W) or (3, H, W) in 0..1 and returns images of the
same shape, so researchers and the benchmarks can call them on their own. ``check`` runs them through
``standard()``, which names each one the way reports show it.

Unlike ``fixative.optimise.eot`` (differentiable approximations the optimiser trains against), these are
the real operations an attacker runs: JPEG goes through libjpeg (Pillow), resizing through Pillow's
resamplers, the IMPRESS attack optimises with the real decoder.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from PIL import Image

from ..errors import FixativeError
from ..optimise import eot

Images = torch.Tensor


class PurificationUnavailable(FixativeError):
    """The purification needs something this machine does not have (a decoder, a local upscaler)."""


def _batched(fn: Callable[[Images], Images]) -> Callable[[Images], Images]:
    """Accept (3, H, W) as well as (B, 3, H, W), as every public function here does."""

    def wrapper(images: Images, *args, **kwargs) -> Images:
        single = images.ndim == 3
        out = fn(images[None] if single else images, *args, **kwargs)
        return out[0] if single else out

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def _to_pil(image: Images) -> Image.Image:
    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def _from_pil(image: Image.Image, like: Images) -> Images:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).to(device=like.device, dtype=like.dtype)


@_batched
def jpeg(images: Images, quality: int) -> Images:
    """Re-save as JPEG at ``quality`` (libjpeg, 4:2:0 chroma subsampling, as image sites do)."""
    out = []
    for image in images:
        buffer = io.BytesIO()
        _to_pil(image).save(buffer, "JPEG", quality=int(quality))
        buffer.seek(0)
        out.append(_from_pil(Image.open(buffer), image))
    return torch.stack(out)


@_batched
def downscale_upscale(images: Images, scale: float) -> Images:
    """Downscale by ``scale`` (Lanczos, as most sites thumbnail) and upscale back with bicubic."""
    h, w = images.shape[-2:]
    small_size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = []
    for image in images:
        small = _to_pil(image).resize(small_size, Image.Resampling.LANCZOS)
        out.append(_from_pil(small.resize((w, h), Image.Resampling.BICUBIC), image))
    return torch.stack(out)


@_batched
def resize_to(images: Images, height: int, width: int) -> Images:
    """Resize to ``height`` x ``width`` (Lanczos, as most sites resize uploads), on the 8-bit grid."""
    return torch.stack(
        [_from_pil(_to_pil(i).resize((width, height), Image.Resampling.LANCZOS), i) for i in images]
    )


def served_at(images: Images, scale: float) -> Images:
    """The copy a site serves (or a trainer feeds the model) at ``scale`` of the size: resized down (Lanczos)
    and left there. Unlike ``downscale_upscale`` nothing brings the picture back to the size the
    protection was made at, so a model sees the perturbation as averaged by the resizing."""
    h, w = images.shape[-2:]
    height, width = round(h * scale), round(w * scale)
    if min(height, width) < eot.SMALLEST:
        raise PurificationUnavailable(
            f"the {width}x{height} copy would be under {eot.SMALLEST} pixels, too small to encode"
        )
    return resize_to(images, height, width)


@_batched
def gaussian_blur(images: Images, sigma: float = 1.0) -> Images:
    """Gaussian blur with standard deviation ``sigma`` pixels (reflected borders)."""
    k = max(3, int(sigma * 3) * 2 + 1)
    return gaussian_blur2d(images.float(), (k, k), (sigma, sigma), border_type="reflect").clamp(0, 1)


@_batched
def noise_then_bicubic(images: Images, std: float = 0.04, scale: float = 0.5, seed: int = 0) -> Images:
    """Add Gaussian noise, then downscale and upscale bicubically: noise drowns the perturbation, resizing
    smooths the noise away (the cheap cousin of noisy upscaling)."""
    generator = torch.Generator().manual_seed(seed)
    noisy = (images + torch.randn(images.shape, generator=generator).to(images) * std).clamp(0, 1)
    h, w = images.shape[-2:]
    small = F.interpolate(
        noisy,
        size=(max(1, round(h * scale)), max(1, round(w * scale))),
        mode="bicubic",
        align_corners=False,
        antialias=True,
    )
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


@_batched
def crop_resize(images: Images, share: float = 0.1) -> Images:
    """Crop ``share`` of each side's length away (half from each edge) and resize back to the full size
    (Pillow bicubic), as re-posting a cropped copy does. Compare with the equally cropped original."""
    h, w = images.shape[-2:]
    top, left = round(h * share / 2), round(w * share / 2)
    box = (left, top, max(left + 1, w - left), max(top + 1, h - top))
    out = []
    for image in images:
        cropped = _to_pil(image).crop(box)
        out.append(_from_pil(cropped.resize((w, h), Image.Resampling.BICUBIC), image))
    return torch.stack(out)


def adverse_cleaner(images: Images, bilateral_passes: int = 64, guided_passes: int = 4) -> Images:
    """AdverseCleaner (the one-click AUTOMATIC1111 extension): 64 OpenCV bilateral filters, then 4 guided
    filters guided by the input. The very filters the optimiser trains against (``optimise.eot``)."""
    try:
        return eot.adverse_cleaner(images, bilateral_passes, guided_passes)
    except eot.CleanerUnavailable as exc:
        raise PurificationUnavailable(str(exc)) from None


def impress(
    images: Images,
    encoder,
    steps: int = 20,
    epsilon: float = 8 / 255,
    lr: float = 0.01,
    lpips_budget: float = 0.1,
    lpips_weight: float = 10.0,
    tile: int = 512,
) -> Images:
    """IMPRESS (Cao et al., 2023): find an image close to the input whose autoencoder reconstruction is
    consistent, ``min ||x - D(E(x))||^2`` (+ an LPIPS penalty beyond ``lpips_budget`` when LPIPS weights
    are present), with Adam for at most ``steps`` steps inside an L-infinity ball of ``epsilon``.

    A protective perturbation makes ``D(E(x))`` differ from ``x``; removing that inconsistency removes
    much of the perturbation. ``encoder`` must have a decoder (``encoder.has_decoder``). Large images are
    purified tile by tile (blended with soft edges), so memory stays bounded.
    """
    from ..features import DEFAULT_OVERLAP, tile_weight, tiles

    if not getattr(encoder, "has_decoder", False):
        name = getattr(encoder, "name", "this encoder")
        raise PurificationUnavailable(f"IMPRESS needs a decoder and {name} has none")
    single = images.ndim == 3
    x0 = (images[None] if single else images).detach().float().to(encoder.device)
    h, w = x0.shape[-2:]
    total = torch.zeros_like(x0)
    weight = torch.zeros(1, 1, h, w, device=x0.device)
    for t in tiles(h, w, tile, DEFAULT_OVERLAP):
        ramp = tile_weight(t, h, w, DEFAULT_OVERLAP, x0.device)[None]
        total[..., t.top : t.top + t.height, t.left : t.left + t.width] += (
            _impress_tile(t.crop(x0), encoder, steps, epsilon, lr, lpips_budget, lpips_weight) * ramp
        )
        weight[..., t.top : t.top + t.height, t.left : t.left + t.width] += ramp
    out = (total / weight.clamp_min(1e-8)).clamp(0, 1).to(images.device)
    return out[0] if single else out


def _impress_tile(
    x0: Images, encoder, steps: int, epsilon: float, lr: float, lpips_budget: float, lpips_weight: float
) -> Images:
    from ..optimise.budget import lpips_distance

    h, w = x0.shape[-2:]
    multiple = int(getattr(encoder, "downscale", 8))
    ph, pw = (-h) % multiple, (-w) % multiple
    delta = torch.zeros_like(x0, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=lr)
    for _ in range(max(0, int(steps))):
        x = (x0 + delta).clamp(0, 1)
        padded = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        recon = encoder.decode(encoder(padded))[..., :h, :w]
        loss = (x - recon).pow(2).mean()
        if lpips_weight > 0:
            dist = lpips_distance(x, x0)
            if dist is not None:
                loss = loss + lpips_weight * torch.relu(dist - lpips_budget)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            delta.clamp_(-epsilon, epsilon)
    return (x0 + delta.detach()).clamp(0, 1)


UPSCALER_ID = "stabilityai/stable-diffusion-x4-upscaler"


def find_local_upscaler(folder: str | Path | None = None) -> Path | None:
    """The diffusers x4 upscaler on this machine (a folder, or the Hugging Face cache); never downloads."""
    if folder:
        path = Path(folder).expanduser()
        return path if (path / "model_index.json").is_file() else None
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(UPSCALER_ID, local_files_only=True))
    except Exception:  # any failure means "not on this machine"
        return None
    return path if (path / "model_index.json").is_file() else None


_UPSCALERS: dict[tuple[str, str], object] = {}


def noisy_upscale(
    images: Images,
    std: float = 0.05,
    noise_level: int = 20,
    steps: int = 20,
    upscaler: str | Path | None = None,
    seed: int = 0,
) -> Images:
    """Noisy upscaling (Hönig et al., 2024): add Gaussian noise, downscale by 4, and let the diffusers x4
    upscaler redraw the details, which it does without the perturbation.

    Runs only with an upscaler already on this machine (``upscaler`` folder or the Hugging Face cache);
    raises ``PurificationUnavailable`` otherwise.
    """
    folder = find_local_upscaler(upscaler)
    if folder is None:
        raise PurificationUnavailable(
            f"noisy upscaling needs the diffusers x4 upscaler ({UPSCALER_ID}) on "
            "this machine; check never downloads it"
        )
    from diffusers import StableDiffusionUpscalePipeline

    single = images.ndim == 3
    batch = images[None] if single else images
    key = (str(folder), str(batch.device))
    pipe = _UPSCALERS.get(key)
    if pipe is None:
        pipe = StableDiffusionUpscalePipeline.from_pretrained(str(folder), local_files_only=True)
        pipe = pipe.to(batch.device)
        pipe.set_progress_bar_config(disable=True)
        _UPSCALERS.clear()
        _UPSCALERS[key] = pipe
    h, w = batch.shape[-2:]
    generator = torch.Generator().manual_seed(seed)
    noisy = (batch + torch.randn(batch.shape, generator=generator).to(batch) * std).clamp(0, 1)
    small = F.interpolate(noisy, size=(max(8, h // 4), max(8, w // 4)), mode="area")
    out = pipe(
        prompt=[""] * len(small),
        image=small * 2 - 1,
        noise_level=noise_level,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images
    out = F.interpolate(out.float(), size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    out = out.to(batch.device)
    return out[0] if single else out


@dataclass(frozen=True)
class Purification:
    """A named purification as ``check`` runs it; ``needs`` says what it requires ("decoder", "upscaler")."""

    name: str
    apply: Callable[..., Images]
    needs: str | None = None
    fast: bool = False  # part of the quick subset ``protect --verify`` runs
    # what the purified protected image is compared with: the equally purified original ("purified"), or
    # the original itself ("original": for costly purifications that leave a clean image nearly unchanged)
    baseline: str = "purified"
    # it moves pixels (crop and resize): scored against the target moved the same way, since a model that
    # trains on the cropped copy sees the cropped target's features, not the uncropped ones
    moves_pixels: bool = False


def standard(impress_steps: int = 50) -> list[Purification]:
    """The purifications a check measures: what published attacks and one-click cleaners run."""
    return [
        Purification("jpeg 90", lambda x: jpeg(x, 90)),
        Purification("jpeg 75", lambda x: jpeg(x, 75), fast=True),
        Purification("jpeg 70", lambda x: jpeg(x, 70)),
        Purification("jpeg 50", lambda x: jpeg(x, 50)),
        Purification("crop 10% + resize", lambda x: crop_resize(x, 0.1), moves_pixels=True),
        Purification("crop 4 px", lambda x: eot.shift(x, 4, 4), moves_pixels=True),
        Purification("downscale 0.5", lambda x: downscale_upscale(x, 0.5), fast=True),
        Purification("downscale 0.25", lambda x: downscale_upscale(x, 0.25)),
        Purification("served at 0.5", lambda x: served_at(x, 0.5), moves_pixels=True),
        Purification("served at 0.25", lambda x: served_at(x, 0.25), moves_pixels=True),
        Purification("gaussian blur 1.0", lambda x: gaussian_blur(x, 1.0)),
        Purification("noise 0.05 + resize", lambda x: noise_then_bicubic(x, 0.05, 0.5)),
        Purification("noise 0.1 + resize", lambda x: noise_then_bicubic(x, 0.1, 0.5)),
        Purification("adverse cleaner", adverse_cleaner),
        Purification(
            "impress",
            lambda x, encoder: impress(x, encoder, steps=impress_steps),
            needs="decoder",
            baseline="original",
        ),
        Purification("noisy upscale", lambda x: noisy_upscale(x), needs="upscaler"),
    ]
