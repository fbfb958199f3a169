"""``protect``: one image through the data path, as numbered steps that each call one stage.

1. check the inputs (the options schema)  2. load the artwork  3. load the encoders  4. the budget
5. the target  6. optimise  7. quantise  8. measure and report  9. transfer to other families found here
(8 and 9 when the report is first asked for, or of a lossy file's own pixels when one is written first:
``ProtectResult``)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from ..checks import purify
from ..checks.measures import perceptual
from ..checks.null import matched_noise, times_noise
from ..checks.robustness import robustness
from ..checks.verdict import (
    NOISE_MULTIPLE,
    POSTED_SIZE_REMEDY,
    PROTECTED_STRENGTH,
    PROTECTED_VIEW,
    SURVIVES_STRENGTH,
    noise_like,
    under_the_line,
    view_of,
)
from ..errors import BadParameterError, FixativeError, TargetWithinNoise
from ..features import StrengthProbe, tiles
from ..load import (
    Artwork,
    load_bytes,
    load_image,
    over_background,
    padded_for_encoders,
    shrunk,
    to_artwork,
)
from ..models import Encoder, ModelEntry, find_models, load_encoders, precision_name
from ..optimise import PerceptualBudget, eot, perceptual_budget, run
from ..optimise.loop import OptimiseResult
from ..options import ProtectOptions, output_path_for
from ..plugins import hooks
from ..presets import Intensity, Quality
from ..presets import intensity as intensity_preset
from ..presets import quality as quality_preset
from ..reports import EncoderStrength, ProtectReport, Purified
from ..save import FORMATS, LOSSY, encode, save_image, to_pil
from ..targets import Target, TargetRequest, make_target
from ..targets.builtin import fallbacks
from ..version import __version__

ProgressFn = Callable[[int, int, dict], None]
DEFINITIONS = {
    "strength": "1 - D(protected, target) / D(original, target), D the mean squared distance of the "
    "encoder's latents (squared, not plain, distances)",
    "decoded_share": "1 - MSE(dec(E(protected)), dec(target latents)) / MSE(dec(E(original)), dec(target "
    "latents)) through the encoder's own decoder: how far what the model sees moved",
    "noise": "matched noise: the original plus the same per-pixel |change| with random signs; vs_noise is "
    "strength / noise strength",
    "flat_rms_255": "RMS change (RGB, 0..255) in the flattest 15 % of the image (7x7 luminance contrast)",
    "jnd_exceed_share": "share of pixels whose Y, Cb or Cr change exceeds one JND of fixative's visual model",
}


@dataclass
class ProtectResult:
    """The protected image (same mode and size as the input, or at most ``max_side``) and the measured report.

    The report is measured once, of the pixels a reader gets: when first asked for, of ``rgb``; when a
    lossy file is written first (``save``, ``encoded``), of that file's pixels. Measuring a 2048² picture
    costs more than a `fast` protection of it (about 100 s here), and a JPEG output used to be measured
    twice."""

    image: Image.Image
    artwork: Artwork
    rgb: torch.Tensor  # protected pixels (3, H, W) 0..1, as quantised in ``image``
    metadata: dict
    # The report of some pixels of this protection (``rgb`` or a lossy file's; ``True``: flattened over
    # white): it holds the encoders and target. None where only the report below exists (a padded image).
    measure: Callable[[torch.Tensor, bool], ProtectReport] | None = field(default=None, repr=False)
    # The latent strength of some pixels, without the rest of a report (a lossy file's "before encoding")
    strength_of: Callable[[torch.Tensor], float] | None = field(default=None, repr=False)
    unencoded: ProtectReport | None = field(default=None, repr=False)  # the report of ``rgb`` itself
    written: ProtectReport | None = field(default=None, repr=False)  # of the lossy file last encoded

    @property
    def report(self) -> ProtectReport:
        """The report of the file last written (a lossy one's own pixels), else of ``rgb``."""
        return self.written if self.written is not None else self.report_of_pixels()

    def report_of_pixels(self) -> ProtectReport:
        if self.unencoded is None:
            self.unencoded = self.measure(self.rgb, False)
        return self.unencoded

    def save(self, path: str | Path, overwrite: bool = False, jpeg_quality: int = 95) -> Path:
        return save_image(
            self.image,
            self.artwork,
            path,
            self.metadata,
            overwrite=overwrite,
            encoder=lambda fmt: self.encoded(fmt, jpeg_quality),
        )

    def encoded(self, fmt: str, jpeg_quality: int = 95) -> bytes:
        """The file's bytes in ``fmt`` (``save.FORMATS``' values), the report made of that file: a lossy
        file's own pixels are measured (WebP at quality 95, 4:2:0 chroma, left strength 0.13 of 0.18
        on a 320 x 256 crop of Mucha's Reverie, which the report of the pixels before encoding claimed).
        A transparent image written as JPEG is flattened over white and measured against the original and
        target flattened the same way."""
        data = encode(self.image, self.artwork, fmt, self.metadata, jpeg_quality)
        self.written = None
        if fmt not in LOSSY:
            return data
        flat = fmt == "JPEG" and self.artwork.transparent
        named = f"{fmt} quality {jpeg_quality}"
        said = [FLATTENED] if flat else []
        if self.measure is None:
            said.append(f"measured before encoding as {named}; `fixative check` measures the file")
            unencoded = self.report_of_pixels()
            self.written = dataclasses.replace(unencoded, notes=[*unencoded.notes, *said])
            return data
        if self.unencoded is not None:
            before = self.unencoded.strength
        else:  # the latents only: the rest of a report of these pixels is what this one saves
            before = self.strength_of(self.rgb)
        written = self.measure(load_bytes(data).rgb, flat)  # what a reader of the file gets
        unprotected = to_pil(self.artwork, self.artwork.rgb)
        plain = load_bytes(encode(unprotected, self.artwork, fmt, None, jpeg_quality)).rgb
        original = flattened(self.artwork, None)[0].rgb if flat else self.artwork.rgb
        codec = perceptual(original, plain)  # the change every figure of this file includes
        written.notes += [
            *said,
            f"measured as written ({named}): strength {written.strength:.2f}, {before:.2f} before "
            f"encoding; the codec's own change is in every figure (the original written the same way: "
            f"PSNR {codec.psnr_db:.1f} dB, flat areas {codec.flat_rms_255:.1f}/255 RMS, max change "
            f"{codec.linf_255:.0f}/255)",
        ]
        self.written = written
        return data


FLATTENED = (
    "written flattened over white (JPEG keeps no transparency): measured against the original and target "
    "flattened the same way; write PNG or WebP to keep the transparency"
)


def protect(
    image,
    method: str | None = None,
    *,
    options: ProtectOptions | dict | None = None,
    target=None,
    mask=None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    **overrides,
) -> ProtectResult:
    """Protect one image. ``image`` may be a path, bytes, PIL image, array or (3, H, W) tensor.

    Options are those of ``fixative.options.ProtectOptions`` (``options=`` and/or keywords, e.g.
    ``method="edit", intensity="high"``); ``models`` may also hold loaded encoders. ``target`` is a user
    image (style image, concept anchor or edit target); ``mask`` (H, W) in 0..1 limits where pixels change.
    """
    started = time.perf_counter()
    opts, specs = check_inputs(method, options, overrides)  # 1
    artwork = to_artwork(image)  # 2
    artwork, user_mask = shrunk(artwork, opts.max_side, mask_for(mask, artwork))  # the size posted
    work, user_mask = padded_for_encoders(artwork, user_mask)
    encoders = load_encoders(
        specs, hooks(), device=opts.device, dtype=opts.dtype, allow_download=opts.allow_download
    )
    preset, effort = presets_for(opts)  # 3 (with the encoders above)
    budget = perceptual_budget(  # 4
        work.rgb, preset.jnd_scale, preset.epsilon, user_mask, opts.texture_aware, grey=work.grey
    )
    request = target_request(work, opts, target, encoders[0].device)  # 5
    tile = tile_for(opts, encoders)
    weight = preset.lpips_weight if opts.lpips_weight is None else opts.lpips_weight
    optimise = partial(  # 6: toward a target, the built-in one that lies beyond the noise where needed
        run, work.rgb, encoders, budget=budget, quality=effort, seed=opts.seed, optimizer=opts.optimizer,
        lpips_weight=weight, lpips_budget=preset.lpips_budget, tile=tile, progress=progress, cancel=cancel,
        tile_batch=opts.tile_batch, levels=grid_levels(work),
    )  # fmt: skip
    goal, optimised = reachable(optimise, request)
    change, gradient = optimised.delta, optimised.gradient
    optimised.delta = optimised.gradient = None  # the rounding is their last use: 201 MB each at 4096²
    pil, protected = quantise(work, change, budget, gradient)  # 7
    del change, gradient, budget, optimise  # freed before the measuring (the budget's limit: 201 MB more)

    budget_kept = budget_record(preset, opts, masked=user_mask is not None)
    protected_in = time.perf_counter() - started  # a report measured later counts its own time on top

    def doing(part: str) -> None:  # the measuring, after the last step: hosts say what runs
        if progress is not None:
            progress(optimised.steps, optimised.steps, {"phase": "measure", "doing": part})

    def measured(pixels: torch.Tensor, flat: bool = False) -> ProtectReport:  # 8, 9
        seen, aim = flattened(work, goal) if flat else (work, goal)  # a JPEG of a transparent image
        begun = time.perf_counter() - protected_in
        probes = None if flat else optimised.probes  # the optimiser's, remembering the original
        report = make_report(
            seen, pixels, encoders, aim, opts, preset, optimised, tile, begun, budget_kept, doing, probes
        )
        doing("transfer to other model families")
        report.transfer = transfer(seen.rgb, pixels, encoders, aim, opts, tile, report.notes)
        return report

    def strength_of(pixels: torch.Tensor) -> float:
        probes = optimised.probes or [StrengthProbe.build(e, goal, work.rgb, tile) for e in encoders]
        return min(round(p.strength(pixels, work.rgb)[0], 4) for p in probes)

    metadata = metadata_for(goal, encoders, opts, budget_kept, artwork)
    if work is artwork:  # measured when the report is asked for, or of the file when a lossy one is written
        return ProtectResult(pil, artwork, protected, metadata, measured, strength_of)
    report = measured(protected)  # padded for the encoders: measured here, then back to the image's size
    protected = protected[:, : artwork.rgb.shape[1], : artwork.rgb.shape[2]]
    pil, report.size = to_pil(artwork, protected), list(artwork.size)
    return ProtectResult(pil, artwork, protected, metadata, unencoded=report)


def check_inputs(method, options, overrides: dict) -> tuple[ProtectOptions, list | None]:
    """Validated options, and the encoder specs (names, paths, entries or loaded encoders)."""
    specs = overrides.pop("models", None)
    loaded = isinstance(specs, (Encoder, ModelEntry)) or (
        isinstance(specs, (list, tuple)) and any(isinstance(s, (Encoder, ModelEntry)) for s in specs)
    )
    if isinstance(overrides.get("device"), torch.device):
        overrides["device"] = str(overrides["device"])
    if isinstance(overrides.get("dtype"), torch.dtype):
        overrides["dtype"] = precision_name(overrides["dtype"])
    if method is not None:
        overrides["method"] = method
    base = options.model_dump() if isinstance(options, ProtectOptions) else dict(options or {})
    if not loaded and specs is not None:
        overrides["models"] = specs
    opts = ProtectOptions.parse(base, **overrides)
    if loaded:
        return opts, list(specs) if isinstance(specs, (list, tuple)) else [specs]
    return opts, opts.models


def presets_for(opts: ProtectOptions) -> tuple[Intensity, Quality]:
    """The intensity and quality presets, with the options that override their numbers applied."""
    preset, effort = intensity_preset(opts.intensity), quality_preset(opts.quality)
    if opts.epsilon is not None:
        preset = dataclasses.replace(preset, epsilon=opts.epsilon)
    if opts.jnd_scale is not None:
        preset = dataclasses.replace(preset, jnd_scale=opts.jnd_scale)
    if opts.steps is not None:
        # The same share of clean steps, and at least one where the preset has any: a run of one or two
        # steps converges before it hardens (rounding made them purify every step, and a purified last step
        # costs one more clean pass for the file's rounding).
        clean = round(effort.eot_start * opts.steps / effort.steps) if effort.steps else 0
        clean = max(clean, 1) if effort.eot_start > 0 else clean
        effort = dataclasses.replace(effort, steps=opts.steps, eot_start=clean)
    return preset, effort


def mask_for(mask, artwork: Artwork) -> torch.Tensor | None:
    """The user's mask as (H, W) 0..1, checked against the image's size."""
    if mask is None:
        return None
    user_mask = torch.as_tensor(mask, dtype=torch.float32)
    if user_mask.ndim == 3:
        user_mask = user_mask.squeeze(0) if user_mask.shape[0] == 1 else user_mask.squeeze(-1)
    if tuple(user_mask.shape) != tuple(artwork.rgb.shape[1:]):
        raise BadParameterError(
            f"mask size {tuple(user_mask.shape)} does not match the image {tuple(artwork.rgb.shape[1:])}"
        )
    return user_mask


# Where Fixative chose the target, noise the size of the whole budget must score this toward it before
# the first step, or the next built-in target is taken. The twelve shared artworks and photos, every built-in
# target, 128² to 512²: -0.11 to 0.04; at 1024², most of them enlarged and so smoother, down to -0.15 (the
# Chelsea photo enlarged 2.3x, its charcoal style). Made flat pictures' first choices: -0.11 to -0.20 where
# kept (a colour's charcoal style), -0.29 and far below where not (a grey picture is the grey target);
# protected toward those, strength read -77 to 1.00 beside noise (`python -m bench.flat`; docs/efficacy.md,
# "Flat pictures").
REACH_FLOOR = -0.25


def reachable(
    optimise: Callable[..., OptimiseResult], request: TargetRequest
) -> tuple[Target, OptimiseResult]:
    """The target asked for and the run toward it; where Fixative chose it (``fallbacks``) and noise of the
    budget's size scores under ``REACH_FLOOR`` toward it (one encoder pass more), the first other built-in
    target it does not, with a note saying so (the last one is taken as it is). A target the user chose is
    taken as it is, at no cost."""
    others = fallbacks(request)
    passed_over: list[str] = []
    for k, asked in enumerate([request, *others]):
        goal = make_target(asked, hooks())
        try:
            optimised = optimise(goal, reach_floor=REACH_FLOOR if k < len(others) else None)
        except TargetWithinNoise as exc:
            scored = f"{exc.reach:.2f}" if exc.reach > -1000 else "under -1000"
            passed_over.append(f"{exc.encoder}'s latents away from {goal.description} (strength {scored})")
            continue
        if passed_over:
            goal.notes.append(
                f"noise of the budget's size alone moved {' and '.join(passed_over)}: on a picture this flat "
                f"or smooth that target lies within the noise, so this protection pulls toward "
                f"{goal.description} instead"
            )
        return goal, optimised
    raise AssertionError("the last target is taken as it is")  # pragma: no cover


def target_request(artwork: Artwork, opts: ProtectOptions, image, device: torch.device) -> TargetRequest:
    return TargetRequest(
        method=opts.method,
        artwork=artwork.rgb,
        image=None if image is None else to_artwork(image, "target").rgb,
        concept=opts.concept,
        anchor=opts.anchor,
        style=opts.style,
        pattern=opts.pattern,
        pipeline=opts.pipeline,
        seed=opts.seed,
        device=device,
    )


def tile_for(opts: ProtectOptions, encoders: list) -> int:
    """Memory is bounded by the tile: the hungriest encoder of the ensemble decides, unless one is given."""
    return opts.tile or min(getattr(e, "tile", 512) for e in encoders)


def grid_levels(artwork: Artwork) -> int:
    """The file's levels per channel: what every written pixel is a whole multiple of (1 / levels)."""
    return 65535 if artwork.bits == 16 else 255


def quantise(
    artwork: Artwork,
    delta: torch.Tensor,
    budget: PerceptualBudget,
    gradient: torch.Tensor | None = None,
) -> tuple[Image.Image, torch.Tensor]:
    """The protected image in the artwork's own mode and bit depth, and its pixels exactly as written:
    whole levels of the file, inside the cap and the budget (rounding never pushes a pixel past them),
    each rounded the way the loss's ``gradient`` falls."""
    protected = budget.quantise(artwork.rgb, delta.to(artwork.rgb), grid_levels(artwork), gradient)
    return to_pil(artwork, protected), protected


def measure(original: torch.Tensor, protected: torch.Tensor, encoders: list, goal, tile: int) -> list:
    """Per encoder: strength and what the model sees (decoded share), each beside matched noise."""
    return scored(original, protected, encoders, goal, tile)[2]


def scored(
    original: torch.Tensor,
    protected: torch.Tensor,
    encoders: list,
    goal,
    tile: int,
    probes: list[StrengthProbe] | None = None,
) -> tuple[list[StrengthProbe], torch.Tensor, list[EncoderStrength]]:
    """``measure``'s rows with the probes and the null they came from (for more figures on the same);
    ``probes`` already built for these encoders, ``goal`` and ``original`` are used when they tile alike."""
    noise = matched_noise(original, protected, seed=1, levels=255)  # as an 8-bit file of it would be
    layout = tiles(original.shape[-2], original.shape[-1], tile)
    if probes is None or [p.encoder for p in probes] != list(encoders) or probes[0].tiles != layout:
        probes = [StrengthProbe.build(e, goal, original, tile) for e in encoders]
    return probes, noise, [strength_row(p, original, protected, noise) for p in probes]


def strength_row(probe: StrengthProbe, original, protected, noise) -> EncoderStrength:
    scored, null = probe.compare(original, protected, noise)
    share, null_share = scored.decoded_share, null.decoded_share
    encoder = probe.encoder
    return EncoderStrength(
        name=encoder.name,
        family=encoder.family,
        strength=round(scored.strength, 4),
        distance_before=round(scored.distance_before, 5),
        distance_after=round(scored.distance_after, 5),
        noise_strength=round(null.strength, 4),
        vs_noise=times_noise(scored.strength, null.strength),
        decoded_share=None if share is None else round(share, 4),
        noise_decoded_share=None if null_share is None else round(null_share, 4),
        feature_shift=round(scored.shift, 5),
    )


def transfer(
    original: torch.Tensor,
    protected: torch.Tensor,
    encoders: list,
    goal,
    opts: ProtectOptions,
    tile: int,
    notes: list[str],
) -> list[EncoderStrength]:
    """Strength on the tiny encoders of other families found on this machine (protection made for one
    family only partly carries over to another), and a note offering the ensemble."""
    used = {e.family for e in encoders}
    others: dict[str, ModelEntry] = {}
    for entry in find_models(hooks()):
        if entry.family not in used and entry.kind == "tiny":
            others.setdefault(entry.family, entry)
    if not others:
        return []
    try:
        extra = load_encoders(list(others.values()), hooks(), device=encoders[0].device, dtype=opts.dtype)
    except FixativeError as exc:
        notes.append(f"transfer to {', '.join(others)} not measured: {exc}")
        return []
    rows = measure(original, protected, extra, goal, tile)
    named = " ".join(f"--model {name}" for name in [e.family for e in encoders] + list(others))
    measured = ", ".join(f"{r.family} {r.strength:.2f} ({beside_noise(r)})" for r in rows)
    notes.append(
        f"optimised for {', '.join(sorted(used))}; also found {', '.join(others)}, where this file reaches "
        f"{measured} without being optimised for it. To protect against all of them: {named}"
    )
    return rows


def beside_noise(row: EncoderStrength) -> str:
    """A ratio such as 12.5x noise, or the noise score itself where a ratio would say nothing."""
    if row.vs_noise is not None:
        return f"{row.vs_noise}x noise"
    return "matched noise " + ("not measured" if row.noise_strength is None else f"{row.noise_strength:.3f}")


def make_report(
    artwork: Artwork,
    protected: torch.Tensor,
    encoders: list,
    goal: Target,
    opts: ProtectOptions,
    preset: Intensity,
    optimised: OptimiseResult,
    tile: int,
    started: float,
    budget: dict,
    doing: Callable[[str], None] = lambda part: None,
    probes: list[StrengthProbe] | None = None,
) -> ProtectReport:
    """The report of ``protected``; ``doing`` is told each costly part as it starts (a 2048² picture's
    report takes over a minute after the last step). ``probes``: the optimiser's for ``artwork`` and
    ``goal``, which remember the original's latents (the target and the original not encoded again)."""
    doing("strength and what the model sees")
    probes, noise, rows = scored(artwork.rgb, protected, encoders, goal, tile, probes)
    report = ProtectReport(
        version=__version__,
        source=artwork.source,
        size=list(artwork.size),
        mode=artwork.mode,
        method=opts.method,
        target=goal.describe(),
        intensity=opts.intensity,
        quality=opts.quality,
        budget=dict(budget),
        encoders=rows,
        strength=min(r.strength for r in rows),
        perceptual=perceptual(artwork.rgb, protected),
        steps=optimised.steps,
        stopped_early=optimised.stopped_early,
        optimise_seconds=round(optimised.seconds, 3),
        seconds=round(time.perf_counter() - started, 3),
        device=str(encoders[0].device),
        seed=opts.seed,
        options=opts.recorded(),
        precision=precision_name(encoders[0].dtype),
        eot=eot.summary(optimised.draws),
        start=optimised.start,
        notes=[*artwork.notes, *goal.notes],
        definitions=DEFINITIONS,
    )
    if report.perceptual.lpips is None:
        report.notes.append("LPIPS not measured: its AlexNet weights are not on this machine")
    flat = over_white(artwork, protected, encoders, goal, tile, report.strength)
    if flat is not None:
        report.notes.append(flat)
    weak = weak_note(rows, opts.intensity)
    if weak:
        report.notes.append(weak)
    if max(artwork.size) >= SERVED_FROM:
        doing("the copy served at half size")
        report.served = served_copy(probes, protected, artwork.rgb, noise, report.strength)
    if report.served is not None:
        report.notes.append(served_note(report.served, report.strength))
    return report


# The longest side, in pixels, from which a protection is also measured in a copy served at half its size.
# A site shows a picture this large smaller (a preview, a feed, a thumbnail), and a copy resized down and
# left there is what a scraper takes: of a 1024² protection the half-size copy kept 0.04-0.13 of
# 0.13-0.29 (Monet's Water Lilies, Mucha's Reverie, Van Gogh's Starry Night; style, edit), where the 512²
# copy protected itself reached 0.14-0.26, 2-5x as much (docs/efficacy.md, "Protect the size you post").
SERVED_FROM = 1024


def served_copy(
    probes: list[StrengthProbe], protected: torch.Tensor, original: torch.Tensor, noise, strength: float
) -> Purified | None:
    """The protection in a copy served at half the size, measured as ``fixative check`` measures "served
    at 0.5" (beside matched noise put through the same resizing): what a site's smaller copy keeps."""
    half = next(p for p in purify.standard() if p.name == "served at 0.5")
    [row] = robustness(probes, protected, original, [half], strength, [], noise)
    return None if row.skipped else row


def served_note(row: Purified, strength: float) -> str:
    """What a copy served at half the size keeps, and the remedy when it keeps under half."""
    seen = "" if row.decoded_share is None else f", what the model sees {row.decoded_share:.2f}"
    null = "" if row.noise_strength is None else f" (matched noise {row.noise_strength:.3f})"
    advice = f"; if you post it smaller, {POSTED_SIZE_REMEDY}" if row.strength < 0.5 * strength else ""
    return (
        f"a copy served at half the size (as sites show large pictures) keeps strength "
        f"{row.strength:.2f}{null} of {strength:.2f}{seen}{advice}"
    )


def over_white(
    artwork: Artwork, protected: torch.Tensor, encoders: list, goal: Target, tile: int, strength: float
) -> str | None:
    """For a transparent image: the protection as a site that flattens it over white passes it on. The
    optimiser sees the colour stored under transparent pixels, which such a copy replaces: an edit shield
    of a 256² Great Wave whose transparent half still held the picture measured 0.18 stored, 0.10 flattened.
    ``strength`` is the file's own (the advice to flatten first is given when a quarter of it is lost)."""
    if not artwork.transparent or tuple(artwork.alpha.shape) != tuple(protected.shape[-2:]):
        return None
    original, goal = flattened(artwork, goal)
    flat = over_background(protected, artwork.alpha)
    weakest = min(measure(original.rgb, flat, encoders, goal, tile), key=lambda r: r.strength)
    seen = "" if weakest.decoded_share is None else f", what the model sees {weakest.decoded_share:.2f}"
    advice = (
        "; to protect what such sites show, flatten the image onto its background before protecting"
        if weakest.strength < 0.75 * strength
        else ""
    )
    return (
        f"flattened over white, as many sites show a transparent image: strength {weakest.strength:.2f} "
        f"({beside_noise(weakest)}){seen}{advice}"
    )


def ready_for(artwork: Artwork, suffix: str) -> Artwork:
    """The artwork as a file with ``suffix`` will hold it: a transparent one flattened over white for JPEG,
    which keeps no transparency, so the optimiser spends nothing under pixels the file will not show (a
    205 x 287 figure a third transparent, protected as stored and flattened when written: strength 0.22 as
    written of 0.27; flattened first: see the test). Hosts call it before ``protect`` when they know the
    format; ``ProtectResult.encoded`` measures a file flattened after protecting the same way."""
    if FORMATS.get(suffix.lower()) != "JPEG" or not artwork.transparent:
        return artwork
    flat = flattened(artwork, None)[0]
    flat.mode = "L" if artwork.grey else "RGB"
    flat.notes = [*artwork.notes, FLATTENED_FIRST]
    return flat


FLATTENED_FIRST = (
    "flattened over white before protecting: JPEG keeps no transparency (write PNG or WebP to keep it)"
)


def flattened(
    artwork: Artwork, goal: Target | None, background: float | torch.Tensor = 1.0
) -> tuple[Artwork, Target | None]:
    """The original and the target as a copy flattened over ``background`` (white: ``save.flattened``)
    shows them."""
    alpha = artwork.alpha
    flat = dataclasses.replace(artwork, rgb=over_background(artwork.rgb, alpha, background), alpha=None)
    if goal is not None and goal.image is not None:
        goal = dataclasses.replace(goal, image=over_background(goal.image, alpha, background))
    return flat, goal


def weak_note(rows: list[EncoderStrength], intensity: str) -> str | None:
    """Said at once when ``fixative check`` would not call this file protected (its strength or matched
    noise lines), with what measurably moves further: a protection is not claimed, it is measured."""
    protecting = [r for r in rows if r.used_to_protect]
    view = view_of(protecting)  # as check reads it
    weak = [r for r in protecting if under_the_line(r.strength, r.noise_strength, *view)]
    if not weak:
        return None
    advice = (
        "--intensity high moved the latents 1.4-1.9x as far on the shared images, more visibly "
        "(docs/efficacy.md, docs/visibility.md)"
        if intensity != "high"
        else "this is already the largest named budget"
    )
    said = "; ".join(why_weak(r) for r in weak)
    return f"weak: {said}, so `fixative check` would not call it protected; {advice}"


def why_weak(row: EncoderStrength) -> str:
    """Which of ``check``'s lines one encoder's row misses, in its own terms: a strength of 0.42 read "is
    under 0.12" where it was under three times its noise."""
    name, strength = row.family, f"{row.strength:.2f}"
    if row.strength <= 0:
        return f"{name}'s latents did not move toward the target (strength {strength}, {beside_noise(row)})"
    if noise_like(row.strength, row.noise_strength):
        noise = f"{NOISE_MULTIPLE:g}x what matched noise scores ({row.noise_strength:.2f})"
        return f"{name} strength {strength} is under {noise}"
    return (
        f"{name} strength {strength} ({beside_noise(row)}) is under {PROTECTED_STRENGTH:.2f} (or "
        f"{SURVIVES_STRENGTH:.2f} where what the model sees moved {PROTECTED_VIEW:.2f} of the way)"
    )


def budget_record(preset: Intensity, opts: ProtectOptions, masked: bool) -> dict:
    """The budget as the report and the file record it."""
    return {
        "epsilon_255": round(preset.epsilon * 255, 3),
        "jnd_scale": preset.jnd_scale,
        "model": "jnd" if opts.texture_aware else "uniform",
        "texture_aware": opts.texture_aware,
        "masked": masked,
    }


def metadata_for(goal: Target, encoders: list, opts: ProtectOptions, budget: dict, artwork: Artwork) -> dict:
    """What the file carries: enough for ``check`` to rebuild the target and find the encoders."""
    metadata = {
        "fixative": __version__,
        "method": opts.method,
        "target": goal.describe(),
        "encoders": [e.source or e.name for e in encoders],
        "encoder_names": [e.name for e in encoders],
        "budget": budget,
        "intensity": opts.intensity,
        "quality": opts.quality,
        "seed": opts.seed,
        "options": opts.recorded(),
    }
    if artwork.digest:
        metadata["input_sha256"] = artwork.digest  # lets a re-run skip inputs that are done
    if goal.caption:
        metadata["caption"] = goal.caption
    return metadata


def protect_file(
    path: str | Path, out: str | Path | None = None, overwrite: bool = False, **options
) -> tuple[Path, ProtectReport]:
    """Protect a file and write ``NAME.protected.png`` (or ``out``); returns the path and the report."""
    artwork = load_image(path)
    result = protect(artwork, **options)
    written = result.save(Path(out) if out else output_path_for(path), overwrite=overwrite)
    result.report.output = str(written)
    return written, result.report
