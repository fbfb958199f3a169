"""The perceptual budget: a JND map that is lower in flat areas than in texture, lower for luminance than
for chroma in texture, no halo at isolated edges; outputs on the file's grid inside cap and budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fixative
from fixative.checks import visibility
from fixative.optimise.budget import jnd_map, perceptual_budget, to_ycc

from .conftest import DEFAULT_EPS_255


def _flat_and_textured(size: int = 128) -> torch.Tensor:
    """Left half flat mid-grey, right half busy random texture (±40 grey levels)."""
    g = torch.Generator().manual_seed(0)
    image = torch.full((3, size, size), 0.5)
    texture = (torch.rand(1, size, size // 2, generator=g) - 0.5) * 80 / 255
    image[:, :, size // 2 :] += texture
    return image.clamp(0, 1)


def test_jnd_is_lower_in_flat_areas_than_in_texture():
    jnd = jnd_map(_flat_and_textured())
    flat, busy = jnd[:, :, 8:48], jnd[:, :, 80:120]
    assert float(flat[0].mean()) < 0.5 * float(busy[0].mean())
    assert float(flat.max()) * 255 <= 1.5 + 1e-4  # flat areas never get more than the flat-field threshold


def test_vision_tolerates_more_chroma_than_luminance_change_in_texture():
    jnd = jnd_map(_flat_and_textured())
    busy = jnd[:, :, 80:120]
    assert float(busy[1].mean()) > 1.5 * float(busy[0].mean())


def test_isolated_edges_get_no_halo_budget():
    from fixative.optimise.budget import JndModel

    image = torch.zeros(3, 96, 96)
    image[:, :, 48:] = 1.0  # one strong edge
    protected_edge = jnd_map(image)[0, :, 44:52].max()
    unprotected = jnd_map(image, JndModel(edge_weight=1.0))[0, :, 44:52].max()  # as if it were texture
    assert float(protected_edge) < 0.25 * float(unprotected)


@pytest.mark.parametrize("strip", [16, 40, 512])
def test_canny_edges_are_kornias_pixel_for_pixel(small_artwork, strip):
    """The one-pass hysteresis and the strips (with their halo) change no pixel of kornia's Canny, on an
    artwork and on a long edge that crosses every strip (hysteresis must follow it across them)."""
    import kornia

    from fixative.optimise.budget import canny_edges

    art = torch.from_numpy(np.array(small_artwork.resize((96, 120)))).permute(2, 0, 1).float() / 255
    spiral = torch.zeros(1, 120, 96)
    ys, xs = torch.meshgrid(torch.arange(120.0), torch.arange(96.0), indexing="ij")
    spiral[0] = 0.5 + 0.5 * torch.sin((xs - 48).hypot(ys - 60) / 3 + torch.atan2(ys - 60, xs - 48))
    for image in (art, spiral.expand(3, -1, -1)):
        luma = kornia.color.rgb_to_ycbcr(image[None])[:, :1]
        _, expected = kornia.filters.canny(luma, low_threshold=0.1, high_threshold=0.25)
        found = canny_edges(luma, strip=strip)
        assert found.shape == expected.shape and float(expected.sum()) > 50
        assert torch.equal(found, expected)


def test_image_sized_work_in_strips_gives_the_whole_images_values(small_artwork):
    """The JND map, the projection, the step and SSIM run in strips of rows (memory at 4096²): the same
    values as on the whole image, whatever the strip."""
    import kornia

    from fixative.optimise.budget import PerceptualBudget

    art = torch.from_numpy(np.array(small_artwork.resize((90, 130)))).permute(2, 0, 1).float() / 255
    whole = jnd_map(art, strip=10_000)
    assert torch.allclose(jnd_map(art, strip=16), whole, atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(3)
    delta = (torch.rand((1, *art.shape), generator=g) - 0.5) * 0.2
    direction = torch.randn(delta.shape, generator=g)
    budget = PerceptualBudget(whole, 12 / 255)
    for strip in (16, 40):
        assert torch.equal(
            budget.project(delta, art[None], strip=strip), budget.project(delta, art[None], strip=999)
        )
        assert torch.equal(
            budget.step(delta, direction, 0.3, strip=strip), budget.step(delta, direction, 0.3, strip=999)
        )
    noisy = (art + (torch.rand(art.shape, generator=g) - 0.5) * 0.1).clamp(0, 1)
    expected = float(kornia.metrics.ssim(noisy[None], art[None], 11).mean())
    found = visibility.windowed_mean(
        lambda a, b: kornia.metrics.ssim(b, a, 11), art[None], noisy[None], strip=16
    )
    assert float(found) == pytest.approx(expected, abs=1e-6) and expected < 0.99


def test_the_budgets_own_flattest_fifth_stays_flat_in_a_busy_image(artwork_path):
    from PIL import Image

    art = torch.from_numpy(np.asarray(Image.open(artwork_path).convert("RGB").resize((128, 96)))).float()
    art = art.permute(2, 0, 1) / 255
    jnd = jnd_map(art)
    contrast = visibility.local_contrast(art).flatten()
    flattest = torch.argsort(contrast)[: int(0.15 * contrast.numel())]
    assert float(jnd[0].flatten()[flattest].max()) * 255 <= 1.5 + 1e-4


def test_quantised_outputs_are_on_the_grid_inside_cap_and_budget():
    art = (_flat_and_textured(64) * 255).round() / 255
    budget = perceptual_budget(art, 1.0, DEFAULT_EPS_255 / 255)
    g = torch.Generator().manual_seed(1)
    wild = (torch.rand(art.shape, generator=g) - 0.5) * 0.3  # far outside the budget on purpose
    out = budget.quantise(art, budget.project(wild[None], art[None])[0])
    levels = out * 255
    assert torch.equal(levels, levels.round())  # whole levels
    assert float((out - art).abs().max()) * 255 <= DEFAULT_EPS_255 + 1e-4
    assert not bool(budget.exceeded(art, out).any())
    ycc = to_ycc(out - art)
    assert bool((ycc.abs() <= budget.limit + 1e-6).all())


def test_rounding_to_the_grid_follows_the_loss_and_stays_inside():
    """With the loss's gradient each pixel goes to the in-box grid point where the loss is lowest to first
    order: never worse than the nearest in-box point (one of its candidates), and a file made by pulling
    every outside pixel back toward the original (what quantise did before) is beaten in sum."""
    art = (_flat_and_textured(64) * 255).round() / 255
    budget = perceptual_budget(art, 1.0, DEFAULT_EPS_255 / 255)
    g = torch.Generator().manual_seed(2)
    delta = budget.project(((torch.rand(art.shape, generator=g) - 0.5) * 0.2)[None], art[None])[0]
    gradient = torch.randn(art.shape, generator=g)
    directed, nearest = budget.quantise(art, delta, gradient=gradient), budget.quantise(art, delta)
    for out in (directed, nearest):
        assert torch.equal(out * 255, (out * 255).round())
        assert not bool(budget.exceeded(art, out).any())
        assert float((out - art).abs().max()) * 255 <= DEFAULT_EPS_255 + 1e-4

    def first_order(out):  # per pixel
        return (gradient * (out - art - delta)).sum(0)

    assert bool((first_order(directed) <= first_order(nearest) + 1e-6).all())
    assert float(first_order(directed).sum()) < float(first_order(nearest).sum())
    # nearest: no farther from the float change than rounding each channel and pulling back would be
    base, steps = (art * 255).round(), ((art + delta) * 255).round() - (art * 255).round()
    for _ in range(DEFAULT_EPS_255 + 1):
        outside = budget.exceeded(art, (base + steps) / 255)
        steps = torch.where(outside[None], steps - steps.sign(), steps)
    pulled = (base + steps) / 255
    assert float((nearest - art - delta).pow(2).sum()) < float((pulled - art - delta).pow(2).sum())
    # a change already on the grid and inside is written as it is
    assert torch.equal(budget.quantise(art, nearest - art), nearest)


def test_an_early_stop_is_the_written_files_strength(taef2, small_artwork):
    """A run stops early only once the file it would write has the strength asked for, and returns that
    file's change (on the grid already: no gradient left to round with)."""
    from fixative.features import StrengthProbe
    from fixative.optimise import run
    from fixative.plugins import hooks
    from fixative.presets import quality
    from fixative.targets import TargetRequest, make_target

    art = torch.from_numpy(np.asarray(small_artwork, dtype=np.float32) / 255).permute(2, 0, 1)[:, :128, :128]
    budget = perceptual_budget(art, 1.0, DEFAULT_EPS_255 / 255)
    goal = make_target(TargetRequest(method="edit", artwork=art, seed=0), hooks())
    result = run(art, [taef2], goal, budget, quality("fast"), seed=0, tile=taef2.tile, stop_at=0.15)
    assert result.stopped_early and result.gradient is None
    written = budget.quantise(art, result.delta)
    assert torch.allclose(written, art + result.delta, atol=1e-6)
    probe = StrengthProbe.build(taef2, goal, art, taef2.tile)
    assert probe.strength(written[None], art)[0] >= 0.15 - 1e-3
    later = run(art, [taef2], goal, budget, quality("fast"), seed=0, tile=taef2.tile, stop_at=0.99)
    assert not later.stopped_early and later.gradient is not None and later.gradient.shape == art.shape


def test_a_grey_artwork_gets_a_luminance_only_budget():
    art = torch.full((3, 32, 32), 0.4)
    budget = perceptual_budget(art, 1.0, 0.05, grey=True)
    assert float(budget.limit[1:].abs().max()) == 0.0 and float(budget.limit[0].min()) > 0


def test_a_smooth_gradient_gets_no_grain(taef2):
    """A sky-like smooth gradient protected at the default: RMS change at most 2/255 everywhere."""
    ramp = torch.linspace(0.25, 0.85, 192)
    sky = torch.stack([ramp * 0.6, ramp * 0.8, ramp]).unsqueeze(1).expand(3, 128, 192).contiguous()
    sky = (sky * 255).round() / 255
    result = fixative.protect(sky, "style", models=[taef2], quality="fast", steps=6)
    change = (result.rgb - sky) * 255
    assert float(change.pow(2).mean().sqrt()) <= 2.0
    assert result.report.perceptual.flat_rms_255 <= 2.0
    assert result.report.perceptual.jnd_exceed_share == 0.0


def test_visibility_figures_can_fail():
    """The measures see grain when there is some: noise of 6/255 in a flat image."""
    flat = torch.full((3, 64, 64), 0.5)
    noisy = (
        flat + (torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) - 0.5) * 12 / 255
    ).clamp(0, 1)
    assert visibility.flat_rms_255(flat, noisy) > 2.0
    assert visibility.jnd_exceed_share(flat, noisy) > 0.5
    assert visibility.ms_ssim(torch.rand(3, 200, 200), torch.rand(3, 200, 200)) < 0.5


def test_jnd_exceed_share_in_strips_counts_what_the_whole_image_does():
    """The strips of rows compare every pixel once: the same share as the whole-image comparison, and it
    moves with the change (a share of 0 and of 1 are both reachable)."""
    generator = torch.Generator().manual_seed(3)
    art = torch.nn.functional.interpolate(torch.rand(1, 3, 20, 26, generator=generator), size=(150, 190))[0]
    change = (torch.rand(3, 150, 190, generator=generator) - 0.5) * 6 / 255
    protected = (art + change * (torch.arange(150) > 70).view(1, -1, 1)).clamp(0, 1)
    ycc = to_ycc(protected - art)
    whole = int((ycc.abs() > jnd_map(art) + 1e-6).any(dim=0).sum()) / (150 * 190)
    assert 0.05 < whole < 0.6
    for strip in (17, 64, 512):
        assert visibility.jnd_exceed_share(art, protected, strip=strip) == whole
    assert visibility.jnd_exceed_share(art, art, strip=17) == 0.0
    assert visibility.jnd_exceed_share(art, 1 - art, strip=17) == 1.0


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise():
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24), size=(192, 192), mode="bilinear")[0]
    assert visibility.ms_ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    slight = (image + torch.randn_like(image) * 0.01).clamp(0, 1)
    strong = (image + torch.randn_like(image) * 0.1).clamp(0, 1)
    assert 1.0 > visibility.ms_ssim(image, slight) > visibility.ms_ssim(image, strong)


def test_rounding_reuses_a_clean_last_steps_gradient(taef2, small_artwork, monkeypatch):
    """After a clean last step, its gradient chooses the rounding (one pass less); after a purified one, one
    more clean pass at the final perturbation does."""
    import dataclasses

    from fixative.optimise import loop, run
    from fixative.plugins import hooks
    from fixative.presets import quality
    from fixative.targets import TargetRequest, make_target

    art = torch.from_numpy(np.asarray(small_artwork, dtype=np.float32) / 255).permute(2, 0, 1)[:, :64, :64]
    budget = perceptual_budget(art, 1.0, DEFAULT_EPS_255 / 255)
    goal = make_target(TargetRequest(method="edit", artwork=art, seed=0), hooks())
    passes = []
    original = loop.Descent.gradient

    def counted(self, delta, drawn, cancel, reuse=False):
        passes.append(len(drawn))
        return original(self, delta, drawn, cancel, reuse)

    monkeypatch.setattr(loop.Descent, "gradient", counted)
    clean = dataclasses.replace(quality("fast"), steps=3, bank_start=False)
    result = run(art, [taef2], goal, budget, clean, seed=0, tile=taef2.tile, stop_at=1.0)
    assert passes == [0, 0, 0] and result.gradient is not None
    passes.clear()
    hardened = dataclasses.replace(clean, eot_samples=1, eot_start=2)
    result = run(art, [taef2], goal, budget, hardened, seed=0, tile=taef2.tile, stop_at=1.0)
    assert passes == [0, 0, 1, 0] and result.gradient is not None


def test_steps_on_the_files_grid_stay_on_it_inside_the_box_and_gain(taef2, small_artwork):
    """grid_passes: after rounding, clean steps on the file's grid. The change comes back on the grid and
    inside the box (written as it is), and it scores more than the rounded file it started from."""
    import dataclasses

    from fixative.features import StrengthProbe
    from fixative.optimise import run
    from fixative.plugins import hooks
    from fixative.presets import quality
    from fixative.targets import TargetRequest, make_target

    art = torch.from_numpy(np.asarray(small_artwork, dtype=np.float32) / 255).permute(2, 0, 1)[:, :96, :96]
    budget = perceptual_budget(art, 1.0, DEFAULT_EPS_255 / 255)
    goal = make_target(TargetRequest(method="edit", artwork=art, seed=0), hooks())
    preset = dataclasses.replace(quality("fast"), steps=3, bank_start=False)
    rounded = run(art, [taef2], goal, budget, preset, seed=0, tile=taef2.tile, stop_at=1.0)
    stepped = run(
        art, [taef2], goal, budget, dataclasses.replace(preset, grid_passes=2), seed=0, tile=taef2.tile,
        stop_at=1.0,
    )  # fmt: skip
    assert stepped.gradient is None  # nothing left to round
    written = budget.quantise(art, stepped.delta)
    assert torch.allclose(written, art + stepped.delta, atol=1e-6)
    assert not bool(budget.exceeded(art, written, tolerance=1e-5).any())
    probe = StrengthProbe.build(taef2, goal, art, taef2.tile)
    before = probe.strength(budget.quantise(art, rounded.delta, gradient=rounded.gradient)[None], art)[0]
    assert probe.strength(written[None], art)[0] > before + 0.002  # 0.317 -> 0.333 here


def test_the_budgets_noise_fills_the_budget_with_random_signs(small_artwork):
    """What ``reach_of_noise`` scores: the whole budget, no direction, inside the box and the cap."""
    art = torch.from_numpy(np.asarray(small_artwork.resize((96, 64)))).permute(2, 0, 1).float() / 255
    budget = perceptual_budget(art, 1.0, 12 / 255)
    noisy = budget.noise(art[None], seed=3)
    change = noisy - art[None]
    assert torch.equal(noisy, budget.noise(art[None], seed=3))
    assert not torch.equal(noisy, budget.noise(art[None], seed=4))
    assert not budget.exceeded(art, noisy[0]).any() and float(change.abs().max()) <= 12 / 255 + 1e-6
    ycc = to_ycc(change[0])
    assert float((ycc.abs() >= budget.limit * 0.99).float().mean()) > 0.5  # most of it at the limit
    moved = ycc[ycc.abs() > 1e-6]
    assert abs(float((moved > 0).float().mean()) - 0.5) < 0.02  # signs of no direction
