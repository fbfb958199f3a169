"""Targets: built-in styles and patterns, style-image statistics, and diffusers pipeline targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fixative
from fixative.plugins import hooks
from fixative.targets import TargetRequest
from fixative.targets import make_target as make_with_hooks
from fixative.targets.styles import STYLES

from .conftest import tiny_text_stack


def make_target(request):
    return make_with_hooks(request, hooks())


def _art(small_artwork, size=(64, 48)) -> torch.Tensor:
    return torch.from_numpy(np.array(small_artwork.resize(size))).permute(2, 0, 1).float() / 255


def test_charcoal_paper_has_no_pixel_grain_and_old_files_still_rebuild_theirs():
    """Noise of a protection's size moved toward a per-pixel paper grain too (matched noise scored up to
    0.075 on photos): the paper's texture is blurred now, so neighbouring pixels move together. A file made
    with the pixel grain records no ``paper``, and ``check`` rebuilds exactly its target (same hash)."""
    from fixative.targets import rebuild_target
    from fixative.targets.base import Target
    from fixative.targets.styles import charcoal

    flat = torch.full((3, 48, 64), 0.6)

    def neighbours(image: torch.Tensor) -> float:  # correlation of horizontally adjacent pixels
        a, b = image[0, :, :-1].flatten(), image[0, :, 1:].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    new = make_target(TargetRequest("style", flat, style="charcoal", seed=3))
    pixel = charcoal(flat, seed=3, grain="pixel")
    assert new.details == {"style": "charcoal", "paper": "fibre"}
    assert neighbours(new.image) > 0.6 and abs(neighbours(pixel)) < 0.1
    assert float(new.image.std()) == pytest.approx(float(pixel.std()), rel=0.25)  # the same amount of texture
    old = Target(
        "style", "procedural", "built-in style 'charcoal'", image=pixel, details={"style": "charcoal"}
    )
    rebuilt = rebuild_target(old.describe(), TargetRequest("style", flat, seed=3), hooks())
    assert rebuilt.hash == old.hash and torch.equal(rebuilt.image, pixel)
    again = rebuild_target(new.describe(), TargetRequest("style", flat, seed=3), hooks())
    assert again.hash == new.hash


@pytest.mark.parametrize("name", sorted(STYLES))
def test_builtin_styles_keep_layout_and_change_style(name, small_artwork):
    art = _art(small_artwork)
    target = make_target(TargetRequest("style", art, style=name))
    assert (
        target.image.shape == art.shape and 0 <= float(target.image.min()) <= float(target.image.max()) <= 1
    )
    assert float((target.image - art).abs().mean()) > 0.05
    assert target.describe()["details"]["style"] == name


@pytest.mark.parametrize("pattern", ["grey", "pattern"])
def test_edit_patterns(pattern, small_artwork):
    art = _art(small_artwork)
    target = make_target(TargetRequest("edit", art, pattern=pattern))
    assert target.image.shape == art.shape and target.kind == pattern


def test_style_image_moves_latent_statistics(taef2, small_artwork, anchor_path):
    from PIL import Image

    style = Image.open(anchor_path).convert("RGB")
    result = fixative.protect(
        small_artwork.resize((96, 64)), "style", models=[taef2], target=style, steps=4, quality="fast"
    )
    assert result.report["target"]["kind"] == "style-image"
    assert result.report["strength"] > 0.2


def _tiny_pipeline(folder):
    """A tiny random Stable Diffusion pipeline saved as a local diffusers folder (no download)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    tokenizer, text_encoder = tiny_text_stack(folder)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=32,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = folder / "pipe"
    pipe.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    pytest.importorskip("transformers")
    return _tiny_pipeline(tmp_path_factory.mktemp("sd"))


def test_img2img_style_target_from_a_local_pipeline(tiny_pipeline, small_artwork):
    art = _art(small_artwork, (64, 64))
    target = make_target(
        TargetRequest("style", art, style="in the style of a charcoal sketch", pipeline=str(tiny_pipeline))
    )
    assert target.kind == "img2img" and target.image.shape == art.shape
    assert target.details["prompt"] == "in the style of a charcoal sketch"


def test_text2img_concept_anchor_keeps_the_caption(tiny_pipeline, small_artwork, taef2):
    art = _art(small_artwork, (64, 64))
    target = make_target(
        TargetRequest("concept", art, concept="a wave", anchor="a cat", pipeline=str(tiny_pipeline))
    )
    assert target.kind == "text2img" and target.image.shape == art.shape and target.caption == "a wave"
    result = fixative.protect(
        art,
        "concept",
        models=[taef2],
        concept="a wave",
        anchor="a cat",
        pipeline=str(tiny_pipeline),
        steps=2,
        quality="fast",
    )
    assert result.metadata["caption"] == "a wave"
    assert result.report["target"]["details"]["anchor"] == "a cat"


def test_missing_pipeline_is_a_clear_error(small_artwork, tmp_path):
    from fixative.errors import FixativeError

    with pytest.raises(FixativeError, match="could not load the diffusers pipeline"):
        make_target(
            TargetRequest("concept", _art(small_artwork), anchor="a cat", pipeline=str(tmp_path / "none"))
        )


def test_fallbacks_are_the_other_built_in_targets_only_where_fixative_chose(small_artwork):
    """A flat picture can lie within noise of Fixative's first choice; the other built-ins are the way out,
    but a target the user named is never replaced."""
    from fixative.targets.builtin import fallbacks
    from fixative.targets.styles import auto_style

    art = torch.from_numpy(np.asarray(small_artwork)).permute(2, 0, 1).float() / 255
    chosen = auto_style(art)
    styles = [r.style for r in fallbacks(TargetRequest("style", art))]
    assert chosen not in styles and sorted([chosen, *styles]) == ["charcoal", "mosaic", "pop"]
    assert [r.pattern for r in fallbacks(TargetRequest("edit", art))] == ["pattern"]
    assert fallbacks(TargetRequest("style", art, style="pop")) == []
    assert fallbacks(TargetRequest("edit", art, pattern="grey")) == []
    assert fallbacks(TargetRequest("edit", art, image=art)) == []
    assert fallbacks(TargetRequest("concept", art, image=art)) == []
