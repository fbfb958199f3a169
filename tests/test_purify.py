"""The public cleaners ``check`` runs and the optimiser trains against: each gives a known output on a
known input (no weights needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixative.checks import purify
from fixative.optimise import eot


def ramp(height: int = 64, width: int = 80) -> torch.Tensor:
    """A left-to-right ramp 0..1 on the 8-bit grid."""
    row = torch.linspace(0, 1, width)
    return (row.expand(3, height, width) * 255).round() / 255


def step_with_grain(size: int = 64, grain: float = 3 / 255) -> torch.Tensor:
    """Two flat halves (0.2 | 0.8) under a +-grain checkerboard, as a protection looks in flat areas."""
    image = torch.full((3, size, size), 0.2)
    image[..., size // 2 :] = 0.8
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float() * grain
    return ((image + checker) * 255).round() / 255


def test_crop_resize_removes_the_borders_and_keeps_the_size():
    image = ramp()
    out = purify.crop_resize(image, 0.1)
    assert out.shape == image.shape
    # 10 % of the width is cropped, half from each edge: the new left column is the old 4th (0.05 x 80)
    assert float(out[0, :, 0].mean()) == pytest.approx(4 / 79, abs=0.01)
    assert float(out[0, :, -1].mean()) == pytest.approx(75 / 79, abs=0.01)
    flat = torch.full((3, 30, 30), 0.4)
    assert torch.allclose(purify.crop_resize(flat, 0.1), (flat * 255).round() / 255, atol=1 / 255)


def test_a_served_copy_is_resized_once_with_lanczos_and_never_below_the_encoders_floor():
    from PIL import Image

    image = ramp()  # 64 x 80
    out = purify.served_at(image, 0.5)
    assert out.shape == (3, 32, 40)
    pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    lanczos = torch.from_numpy(np.asarray(pil.resize((40, 32), Image.Resampling.LANCZOS)))
    assert torch.equal((out * 255).round().byte(), lanczos.permute(2, 0, 1))
    assert purify.served_at(torch.stack([image, image]), 0.5).shape == (2, 3, 32, 40)
    with pytest.raises(purify.PurificationUnavailable, match="under 32 pixels"):
        purify.served_at(image, 0.25)


def test_adverse_cleaner_removes_grain_and_keeps_the_edge():
    image = step_with_grain()
    out = purify.adverse_cleaner(image)
    assert out.shape == image.shape
    left, right = out[..., 8:56, 4:28], out[..., 8:56, 36:60]
    # the guided filters, guided by the input, bring part of the grain back: a bit over a third is left
    assert float(left.std()) < 0.5 * float(image[..., 8:56, 4:28].std())
    assert float(right.mean() - left.mean()) == pytest.approx(0.6, abs=0.02)  # the edge survives
    assert float(left.mean()) == pytest.approx(0.2, abs=2 / 255)
    batch = torch.stack([image, image.flip(-1)])
    assert torch.equal(purify.adverse_cleaner(batch)[0], out)  # batches run image by image


def test_noise_then_resize_is_seeded_and_its_noise_is_smoothed():
    flat = torch.full((3, 64, 64), 0.5)
    a = purify.noise_then_bicubic(flat, 0.1, 0.5, seed=3)
    assert torch.equal(a, purify.noise_then_bicubic(flat, 0.1, 0.5, seed=3))
    assert not torch.equal(a, purify.noise_then_bicubic(flat, 0.1, 0.5, seed=4))
    assert float(a.mean()) == pytest.approx(0.5, abs=0.01)
    assert 0.01 < float(a.std()) < 0.1 * 0.6  # resizing smooths the noise it added
    stronger = purify.noise_then_bicubic(flat, 0.1, 0.5, seed=3).std()
    assert float(purify.noise_then_bicubic(flat, 0.05, 0.5, seed=3).std()) < float(stronger)


def test_battery_names_the_public_cleaners():
    names = [p.name for p in purify.standard()]
    for name in (
        "jpeg 90",
        "jpeg 70",
        "jpeg 50",
        "crop 10% + resize",
        "crop 4 px",
        "downscale 0.5",
        "served at 0.5",
        "served at 0.25",
        "downscale 0.25",
        "noise 0.05 + resize",
        "noise 0.1 + resize",
        "adverse cleaner",
        "impress",
        "noisy upscale",
    ):
        assert name in names
    assert {p.name for p in purify.standard() if p.fast} == {"jpeg 75", "downscale 0.5"}


def test_eot_plans_the_training_mix_in_its_shares_over_each_kinds_whole_range_and_keeps_gradients():
    count = 28  # four whole cycles of the mix (2 + 1 + 2 + 1 + 1)
    draws = eot.plan(torch.Generator().manual_seed(0), count)
    total = sum(m.weight for m in eot.TRAINING_MIX.values())
    for kind, mix in eot.TRAINING_MIX.items():
        values = sorted(d.value for d in draws if d.kind == kind)
        assert len(values) == count * mix.weight / total, kind  # exactly its share, not about it
        width = (mix.high - mix.low) / len(values)  # one strength from each equal slice of the range
        for k, value in enumerate(values):
            assert mix.low + k * width <= value <= mix.low + (k + 1) * width, (kind, values)
    assert len(eot.plan(torch.Generator().manual_seed(0), 16)) == 16
    assert eot.plan(torch.Generator().manual_seed(3), 16) == eot.plan(torch.Generator().manual_seed(3), 16)
    assert eot.plan(torch.Generator().manual_seed(3), 16) != eot.plan(torch.Generator().manual_seed(4), 16)
    # another mix can be asked for; every kind the machine runs can be drawn
    everything = {k: eot.Mix(1, 0.1, 0.2) for k in eot.available_kinds()}
    kinds = {d.kind for d in eot.plan(torch.Generator().manual_seed(0), 2 * len(everything), everything)}
    assert kinds == set(eot.available_kinds())
    x = step_with_grain(32)[None].requires_grad_(True)
    shifted = eot.apply(eot.Draw("shift", 3.0, 13), x)  # 3 rows, 13 % 8 = 5 columns off the grid
    assert shifted.shape == (1, 3, 29, 27) and torch.equal(shifted, x[..., 3:, 5:])
    for drawn in (eot.Draw("crop", 0.1), eot.Draw("noisy_resize", 0.08, 1), eot.Draw("adverse", 16.0)):
        out = eot.apply(drawn, x)
        assert out.shape == x.shape
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert float(grad.abs().sum()) > 0
    big = step_with_grain(96)[None].requires_grad_(True)
    out = eot.apply(eot.Draw("served", 0.5), big)
    assert out.shape == (1, 3, 48, 48)  # a served copy stays small: the loss meets the target there
    (grad,) = torch.autograd.grad(out.sum(), big)
    assert float(grad.abs().sum()) > 0
    assert eot.apply(eot.Draw("served", 0.1), big).shape[-1] == eot.SMALLEST


def test_eot_adverse_runs_the_cleaner_forward_and_passes_the_gradient_straight_through():
    x = step_with_grain(32)[None].requires_grad_(True)
    out = eot.apply(eot.Draw("adverse", 64.0), x)
    assert torch.allclose(out.detach(), purify.adverse_cleaner(x.detach()), atol=1e-6)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))


def test_eot_crop_keeps_flat_images_and_alignment():
    flat = torch.full((1, 3, 48, 48), 0.3)
    assert torch.allclose(eot.crop_resample(flat, 0.1), flat, atol=1e-5)
    image = ramp(48, 48)[None]
    # geometry undone: the ramp stays where it was (only resampling blur remains)
    assert float((eot.crop_resample(image, 0.1) - image)[..., 4:-4].abs().max()) < 0.02


def test_crop_and_resize_is_scored_against_the_equally_cropped_target(taef2):
    """A copy equal to its target image keeps all of its strength through crop + resize once the target
    is cropped the same way; scored against the uncropped target it would look mostly lost."""
    from fixative.checks.robustness import robustness
    from fixative.features import StrengthProbe
    from fixative.targets import Target

    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    original = torch.stack([yy, xx, (yy * xx).sqrt()]) * 0.8 + 0.1
    goal = Target("style", "image", "a test target", image=torch.rand(3, 96, 96))
    probe = StrengthProbe.build(taef2, goal, original)
    crop = next(c for c in purify.standard() if c.name.startswith("crop"))
    moved = [c for c in purify.standard() if c.moves_pixels]
    assert [c.name for c in moved] == [crop.name, "crop 4 px", "served at 0.5", "served at 0.25"]
    rows = robustness([probe], goal.image, original, moved, 1.0, [])
    assert [r.purification for r in rows] == [c.name for c in moved]
    assert all(r.strength > 0.999 for r in rows[:3])  # a smaller copy: its own tiles and target
    assert rows[3].skipped and "under 32 pixels" in rows[3].skipped  # 24 x 24: too small to encode
    unaligned = probe.strength(crop.apply(goal.image), crop.apply(original))[0]
    assert unaligned < 0.9  # what the check reported before it re-aligned the target
