"""``check``: how protected is this file, and does the protection survive purification?

1. read the inputs  2. the encoders it was protected against  3. rebuild the target from the metadata
4. probes, and the original (given, or estimated)  5. strength per encoder  6. robustness  7. transfer
8. perceptual cost  9. what the model sees  10. verdict and report

The figures come from the same ``fixative.features.StrengthProbe`` the optimiser and ``protect`` use, so a
check of a fresh file agrees with what ``protect`` printed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import features
from ..checks import estimate, purify
from ..checks.measures import feature_shift, model_view, perceptual
from ..checks.null import matched_noise
from ..checks.robustness import robustness
from ..checks.verdict import NOISE_MULTIPLE, Visuals, remedy, thresholds, verdict, view_of
from ..errors import BadImageError, FixativeError, ModelNotFoundError
from ..load import Artwork, over_background, padded_for_encoders, shrunk, to_artwork
from ..models import Encoder, find_models, load_encoders, precision_name
from ..plugins import hooks
from ..reports import CheckReport, EncoderStrength
from ..targets import Target, TargetRequest, make_target, rebuild_target
from ..version import __version__
from .protect import DEFINITIONS, ProgressFn, flattened, strength_row

# A copy whose proportions differ from the original's by more than this share was cropped, not resized
COPY_ASPECT_TOLERANCE = 0.02


@dataclass
class _Inputs:
    art: Artwork
    orig: Artwork | None  # at the file's size (resized like it, when the file is a resized copy)
    meta: dict | None
    notes: list[str] = field(default_factory=list)
    full: Artwork | None = None  # the original as given, when the file is a resized or flattened copy
    backdrop: tuple | None = None  # (alpha, background) the original was flattened with, to match the file

    @property
    def exact(self) -> bool:
        return self.orig is not None


def check(
    protected,
    original=None,
    models=None,
    device: str | torch.device | None = "cpu",
    fast: bool = False,
    target=None,
    pipeline: str | None = None,
    impress_steps: int = 50,
    transfer: bool | None = None,
    purifications: list[purify.Purification] | None = None,
    json_path: str | Path | None = None,
    html_path: str | Path | None = None,
    progress: ProgressFn | None = None,
    precision: str = "auto",
    metadata_from=None,
) -> CheckReport:
    """Measure a protected image: per-encoder strength, perceptual cost, strength after each purification,
    transfer to encoders not used to protect, notes about what could not be measured, and a verdict
    ("protected", "weakened by <purification>", "not protected", or "not measured").

    ``protected``/``original`` accept what ``protect`` accepts (path, bytes, PIL, array, tensor); without
    ``original`` the figures are estimates. ``models`` overrides the encoders recorded in the file.
    ``target`` is the style/anchor/target image given to ``protect``, when it used one. ``fast`` runs the
    quick subset ``protect --verify`` uses (two purifications, no transfer, no pictures).
    ``purifications`` replaces the standard list (``fixative.checks.purify.standard()``). ``progress`` is
    called as each part starts: ``(done, total, {"phase": "check", "doing": name})``. ``precision`` is
    the encoders' (``auto``: bf16 on a CPU that computes it in hardware, as ``protect``; every figure within
    0.006 of fp32's, docs/check.md). ``metadata_from``: the protected file as Fixative wrote it, whose
    metadata to use, for a copy a site served (metadata stripped; a resized copy is compared with the
    original resized the same way), or that metadata itself as a dict (``ProtectResult.metadata``).
    """
    result, visuals = run_check(
        protected, original, models, device, fast, target, pipeline,
        purifications=purifications, impress_steps=impress_steps, transfer=transfer, progress=progress,
        precision=precision, metadata_from=metadata_from,
    )  # fmt: skip
    if json_path:
        from ..checks.report import write_json

        write_json(result, json_path)
    if html_path:
        from ..checks.html_report import write_html

        write_html(result, visuals, html_path)
    return result


def run_check(
    protected,
    original=None,
    models=None,
    device: str | torch.device | None = "cpu",
    fast: bool = False,
    target_image=None,
    pipeline: str | None = None,
    purifications: list[purify.Purification] | None = None,
    impress_steps: int = 50,
    transfer: bool | None = None,
    tile: int = features.DEFAULT_TILE,
    progress: ProgressFn | None = None,
    precision: str = "auto",
    metadata_from=None,
) -> tuple[CheckReport, Visuals]:
    """The check and the pixels its HTML report shows. See ``check`` for the arguments."""
    started = time.perf_counter()
    given = read_inputs(protected, original, metadata_from)  # 1
    notes = given.notes
    primary = protecting_encoders(given.meta, models, device, notes, precision)  # 2
    chosen = cleaners(purifications, fast, impress_steps)
    wanted = (not fast if transfer is None else transfer) and given.meta is not None
    parts = [
        "target and strength",
        *(c.name for c in chosen),
        *(["transfer"] * wanted),
        *(["pictures"] * (not fast)),
    ]
    doing = Parts(progress, parts)
    doing("target and strength")
    goal, target_info = target_of(given, target_image, pipeline, primary[0].device)  # 3
    reference = given.orig.rgb if given.exact else given.art.rgb
    probes = [features.StrengthProbe.build(e, goal, reference, tile) for e in primary] if goal else []
    found = detect(given, probes, primary[0].device, tile) if probes and not given.exact else None  # 4
    p, o = given.art.rgb, original_or_estimate(given, probes)
    noise = matched_noise(o, p, seed=1, levels=255) if given.exact else None  # the null
    rows = strength_rows(primary, probes, p, o, noise, given, tile)  # 5
    strength = min((r.strength for r in rows if r.strength is not None), default=None)
    purified = robustness(probes, p, o, chosen, strength, notes, noise, doing) if probes else []  # 6
    doing("transfer")
    transfer_rows = (
        transfer_strengths(primary, goal, reference, p, o, device, tile, notes)
        if wanted and goal is not None
        else []
    )  # 7
    measures = perceptual_cost(given)  # 8
    doing("pictures")
    visuals = (
        pictures(given, primary, device, notes) if not fast else Visuals(given.orig and given.orig.rgb, p)
    )  # 9
    doing.finish()
    missing = tuple(r.purification for r in purified if r.skipped) + not_run(purifications, fast)
    null = max((r.noise_strength for r in rows if r.noise_strength is not None), default=None)
    view, view_noise = view_of(rows)
    said, reason = verdict(
        strength,
        purified,
        given.exact,
        found.detected if found else None,
        null,
        missing,
        view=view,
        view_noise=view_noise,
    )  # 10
    advice = remedy(said)
    if advice:
        notes.append(advice)
    report = CheckReport(
        fixative=__version__,
        file=given.art.source,
        original=None if given.orig is None else given.orig.source,
        size=list(given.art.size),
        verdict=said,
        verdict_reason=reason,
        exact=given.exact,
        fast=fast,
        strength=None if strength is None else round(strength, 4),
        thresholds=thresholds(),
        encoders=rows,
        perceptual=measures,
        robustness=purified,
        transfer=transfer_rows,
        target=target_info,
        metadata=given.meta,
        model_sees=visuals.decoder_name,
        notes=notes,
        seconds=round(time.perf_counter() - started, 3),
        precision=precision_name(primary[0].dtype),
        not_measured=list(missing),
        estimate=None if found is None else {**found.to_dict(), "uncertainty": estimate.ESTIMATE_ERROR},
        definitions={**DEFINITIONS, **AFTER_CLEANERS},
    )
    return report, visuals


AFTER_CLEANERS = {
    "robustness": "each figure after a cleaner compares the purified file with the equally purified original "
    "(IMPRESS: with the original itself); share_kept is strength after / strength before; noise_strength and "
    "noise_decoded_share put matched noise through the same cleaner and score it the same way; a cleaner is "
    f"survived at strength >= thresholds.survives and >= {NOISE_MULTIPLE:g}x that noise strength, or (with "
    "the original) at half that strength where the decoded share left is >= thresholds.survives_view and "
    f">= {NOISE_MULTIPLE:g}x noise's",
}


class Parts:
    """Tells ``progress`` (done, total, {"phase": "check", "doing": name}) as each named part of a check
    starts, so a host can show what a minutes-long check is doing (IMPRESS takes most of it); parts that do
    not run are passed over."""

    def __init__(self, progress: ProgressFn | None, names: list[str]) -> None:
        self.progress, self.names, self.done = progress, names, 0

    def __call__(self, name: str) -> None:
        if name not in self.names[self.done :]:
            return
        self.done = self.names.index(name, self.done)
        if self.progress is not None:
            self.progress(self.done, len(self.names), {"phase": "check", "doing": name})
        self.done += 1

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(len(self.names), len(self.names), {"phase": "check", "doing": "done"})


def cleaners(purifications, fast: bool, impress_steps: int) -> list[purify.Purification]:
    """The given purifications, else the standard battery (its quick subset with ``fast``)."""
    if purifications is not None:
        return purifications
    return [c for c in purify.standard(impress_steps) if c.fast or not fast]


def not_run(purifications, fast: bool) -> tuple[str, ...]:
    """What the quick subset (``--fast``, ``protect --verify``) leaves out, for the verdict to name: it is
    the optimistic end of the full check (served copies and crops off the grid keep the least)."""
    if purifications is not None or not fast:
        return ()
    left = [c.name for c in purify.standard() if not c.fast]
    if not left:
        return ()
    return (f"the full check's {len(left)} other cleaners (served copies and crops among them)",)


def read_inputs(protected, original, metadata_from=None) -> _Inputs:
    """The file, the original (resized like the file when the file is a resized copy: a site's) and the
    Fixative metadata (the file's own, or that of ``metadata_from``: the protected file as written)."""
    art = to_artwork(protected, "protected")
    orig = None if original is None else to_artwork(original, "original")
    notes: list[str] = []  # after the file's own (those of its padding too)
    if metadata_from is not None:
        art.metadata = metadata_of(metadata_from, art, notes)
    if art.metadata is None and orig is None:
        raise BadImageError(
            f"{art.source or 'image'}: no Fixative metadata in this file (not protected by "
            "Fixative, or an editor/site stripped it) and no --original given, so nothing "
            "can be measured; pass --original ORIG to measure perceptual cost and feature "
            "shift"
        )
    posted = posted_size(art.metadata)
    if orig is not None and posted and max(orig.size) > posted:  # protected as the copy posted (--max-side)
        (w, h), orig = orig.size, shrunk(orig, posted)[0]
        notes.append(
            f"the file was protected at most {posted} px on a side (max_side): the original ({w}x{h}) "
            f"shrunk the same way to {orig.size[0]}x{orig.size[1]}, and the target made on that"
        )
    source, backdrop = orig, None
    if orig is not None and orig.transparent and not art.transparent:
        background = background_of(art, orig.alpha)
        backdrop = (orig.alpha, background)
        orig = flattened(orig, None, background)[0]
        colour = ", ".join(f"{round(255 * float(c))}" for c in background.flatten())
        notes.append(
            "the original is transparent and this file is not (a JPEG, or a site flattened it): compared "
            f"with the original and target flattened over the file's background (RGB {colour})"
        )
    resized = orig is not None and orig.rgb.shape != art.rgb.shape
    if resized:
        orig = resized_like(orig, art)
        notes.append(
            f"this file is {art.size[0]}x{art.size[1]}, the original {source.size[0]}x{source.size[1]}: "
            "compared with the original resized the same way (Lanczos, as most sites resize), and the "
            "target made on the original, then resized too; the resizing is in every figure"
        )
    art, _ = padded_for_encoders(art)
    orig = None if orig is None else padded_for_encoders(orig)[0]
    full = None  # the original as given, which the target is made on (before any resizing or flattening)
    if resized:
        full = source
    elif backdrop is not None:
        full = padded_for_encoders(source)[0]
    return _Inputs(art, orig, art.metadata, [*art.notes, *notes], full, backdrop)


def posted_size(metadata: dict | None) -> int | None:
    """The longest side the file was protected at (``max_side``), when its metadata records a sound one."""
    options = (metadata or {}).get("options")
    value = options.get("max_side") if isinstance(options, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def background_of(copy: Artwork, alpha) -> torch.Tensor:
    """The colour a flattened copy shows where the original is wholly transparent (its median there, as
    (3, 1, 1)); white, as ``save.flattened`` writes, when under 1 % of the original is."""
    h, w = copy.rgb.shape[-2:]
    if alpha.shape != (h, w):
        alpha = np.asarray(Image.fromarray(alpha).resize((w, h), Image.Resampling.BOX))
    empty = torch.from_numpy(np.asarray(alpha) == 0)
    if int(empty.sum()) < max(16, 0.01 * h * w):
        return torch.ones(3, 1, 1)
    return copy.rgb[:, empty].median(dim=1).values.view(3, 1, 1)


def metadata_of(source, art: Artwork, notes: list[str]) -> dict:
    """The Fixative metadata of ``source`` (the protected file as Fixative wrote it), for a copy a site
    served: sites strip metadata. A dict is the metadata itself, from a host that keeps it beside pixels
    that carry none (ComfyUI's IMAGE tensors: Protect Image's report)."""
    if isinstance(source, dict):
        if not isinstance(source.get("target"), dict):
            raise BadImageError(
                "the metadata given records no target: give what Fixative wrote with the image"
            )
        notes.append("Fixative metadata given beside the image (it carries none of its own)")
        return source
    given = to_artwork(source, "metadata source")
    name = given.source or "the metadata source"
    if given.metadata is None:
        raise BadImageError(f"{name}: no Fixative metadata in it either; give the file Fixative wrote")
    said = "replaces this file's own" if art.metadata is not None else "this file carries none"
    notes.append(f"Fixative metadata read from {name} ({said})")
    return given.metadata


def resized_like(original: Artwork, copy: Artwork) -> Artwork:
    """The original at the copy's size, for a copy a site resized (the same picture: same aspect)."""
    (w, h), (cw, ch) = original.size, copy.size
    if abs(cw / ch - w / h) > COPY_ASPECT_TOLERANCE * (w / h) or min(cw, ch) < 32:
        raise BadImageError(
            f"original is {w}x{h} but the protected image is {cw}x{ch}; give the exact original it was "
            "made from (a resized copy must keep the picture's proportions and be at least 32 pixels)"
        )
    rgb = purify.resize_to(original.rgb, ch, cw)
    return dataclasses.replace(original, rgb=rgb, alpha=None, notes=[])


def protecting_encoders(
    metadata: dict | None, models, device, notes: list[str], precision: str = "auto"
) -> list[Encoder]:
    """The encoders named by ``models``, else those the file records, else the default one."""
    if models:
        return load_encoders(models, hooks(), device=device, dtype=precision)
    recorded = (metadata or {}).get("encoders") or []
    names = (metadata or {}).get("encoder_names") or []
    found = []
    for i, source in enumerate(recorded):
        for spec in (source, names[i] if i < len(names) else None):
            if not spec:
                continue
            try:
                found.append(load_encoders([spec], hooks(), device=device, dtype=precision)[0])
                break
            except ModelNotFoundError:
                continue
        else:
            notes.append(
                f"the encoder this file was protected with ({Path(str(source)).name}) is not on "
                "this machine; pass --model to measure against it"
            )
    if found:
        return found
    encoders = load_encoders(None, hooks(), device=device, dtype=precision)
    if recorded:
        notes.append(f"measured with {encoders[0].name} instead")
    return encoders


def target_of(given: _Inputs, target_image, pipeline, device) -> tuple[Target | None, dict]:
    """The target ``protect`` used, rebuilt from the metadata on the original (or the protected file)."""
    recorded = (given.meta or {}).get("target")
    info: dict = {"recorded": recorded, "rebuilt": False, "hash_match": None}
    if not recorded:
        given.notes.append(
            "no Fixative metadata: the target is unknown, so strength cannot be measured; "
            "perceptual cost and feature shift against the original are shown"
        )
        return None, info
    made_on = given.full or given.orig  # a resized copy's target is made at the original's size
    request = TargetRequest(
        method=recorded.get("method") or "",
        artwork=made_on.rgb if made_on is not None else given.art.rgb,
        image=None if target_image is None else to_artwork(target_image, "target").rgb,
        seed=int((given.meta or {}).get("seed", 0)),
        device=device,
        pipeline=pipeline,
    )
    goal = rebuild_target(recorded, request, hooks())
    if goal is None:
        need = {"pipeline": "the pipeline folder (--pipeline)"}.get(
            recorded.get("needs") or "", "the same target image (--target)"
        )
        given.notes.append(
            f"strength not measured: the target ({recorded.get('description', recorded.get('kind'))}) "
            f"cannot be rebuilt from the metadata alone; pass {need} used when protecting"
        )
        return None, info
    info["rebuilt"] = True
    if given.exact:
        info["hash_match"] = goal.hash == recorded.get("hash")
        if not info["hash_match"]:
            given.notes.append(
                "the rebuilt target's hash differs from the recorded one: the original or target image "
                "given is not exactly the one protected; figures are approximate"
            )
    else:
        given.notes.append(
            "no original given: strengths are estimates from a stand-in original, and a verdict needs the "
            "protection to show in the pixels (see estimate)"
        )
    if given.backdrop is not None and goal.image is not None:  # flattened like the copy (a padded one's
        alpha, background = given.backdrop  # alpha on its edge pixels, as ``padded_for_encoders`` pads)
        h, w = goal.image.shape[-2:]
        alpha = np.pad(alpha, ((0, h - alpha.shape[0]), (0, w - alpha.shape[1])), mode="edge")
        goal = dataclasses.replace(goal, image=over_background(goal.image, alpha, background))
    if given.full is not None and goal.image is not None:
        height, width = given.orig.rgb.shape[-2:]
        if goal.image.shape[-2:] != (height, width):  # resized like the copy too
            goal = dataclasses.replace(goal, image=purify.resize_to(goal.image, height, width))
    return goal, info


def detect(given: _Inputs, probes: list, device, tile: int) -> estimate.Detection:
    """Whether the pixels carry a protection toward the recorded target, against decoy targets (the
    built-in styles and patterns other than the recorded one), with the first encoder."""
    recorded = (given.meta or {}).get("target") or {}
    decoys = {}
    for method, option, names in (
        ("style", "style", ("charcoal", "pop", "mosaic")),
        ("edit", "pattern", ("grey", "pattern")),
    ):
        for name in names:
            if (recorded.get("details") or {}).get(option) == name:
                continue
            request = TargetRequest(method=method, artwork=given.art.rgb, device=device, **{option: name})
            decoy = make_target(request, hooks())
            decoys[f"{method}:{name}"] = features.StrengthProbe.build(
                probes[0].encoder, decoy, given.art.rgb, tile
            )
    return estimate.detection(given.art.rgb, probes[0], decoys)


def original_or_estimate(given: _Inputs, probes: list) -> torch.Tensor | None:
    if given.exact:
        return given.orig.rgb
    if not probes:
        return None
    budget = (given.meta or {}).get("budget") or {}
    cap = float(budget.get("epsilon_255", 8)) / 255
    return estimate.estimate_original(given.art.rgb, probes, float(budget.get("jnd_scale", 1.0)), cap)


def strength_rows(primary, probes, p, o, noise, given: _Inputs, tile: int) -> list[EncoderStrength]:
    """Per encoder: strength and decoded share; with the original, matched noise beside each."""
    rows = []
    for encoder, probe in zip(primary, probes or [None] * len(primary), strict=True):
        if probe is None:
            row = EncoderStrength(name=encoder.name, family=encoder.family, strength=None)
        elif noise is not None:
            row = strength_row(probe, o, p, noise)
        else:
            s, before, after = probe.strength(p, o)
            share = probe.decoded_share(p, o)
            row = EncoderStrength(
                name=encoder.name, family=encoder.family, strength=round(s, 4),
                distance_before=round(before, 5), distance_after=round(after, 5),
                decoded_share=None if share is None else round(share, 4),
            )  # fmt: skip
        row.source = encoder.source
        if given.exact and row.feature_shift is None:  # no target to score: encoded for this alone
            row.feature_shift = round(feature_shift(encoder, given.orig.rgb, p, tile), 5)
        rows.append(row)
    return rows


def transfer_strengths(primary, goal, reference, p, o, device, tile, notes) -> list[EncoderStrength]:
    """Strength on every other encoder found here (not used to protect)."""
    used = {_entry_key(e.source) for e in primary if e.source}
    rows = []
    for entry in find_models(hooks()):
        if _entry_key(entry.source) in used:
            continue
        try:
            encoder = load_encoders(
                [entry], hooks(), device=device, dtype=primary[0].dtype, with_decoder=False
            )[0]
        except FixativeError as exc:
            notes.append(f"transfer: could not load {entry.name} ({exc})")
            continue
        s, before, after = features.StrengthProbe.build(encoder, goal, reference, tile).strength(p, o)
        rows.append(
            EncoderStrength(
                name=encoder.name, family=encoder.family, source=encoder.source, strength=round(s, 4),
                distance_before=round(before, 5), distance_after=round(after, 5), used_to_protect=False,
            )
        )  # fmt: skip
    if not rows:
        notes.append("transfer not measured: no encoder other than the protecting one(s) was found")
    return rows


def perceptual_cost(given: _Inputs):
    if given.exact:
        measures = perceptual(given.orig.rgb, given.art.rgb)
        if measures.lpips is None:
            given.notes.append("LPIPS not measured: its AlexNet weights are not on this machine")
        return measures
    budget = ((given.meta or {}).get("budget") or {}).get("epsilon_255")
    given.notes.append(
        "perceptual cost not measured: it needs the original (--original)"
        + (f"; the recorded budget was L∞ ≤ {budget}/255" if budget is not None else "")
    )
    return None


def pictures(given: _Inputs, primary: list[Encoder], device, notes: list[str]) -> Visuals:
    """What the model sees of the protected image (and the original), through the first decoder found."""
    visuals = Visuals(original=given.orig.rgb if given.exact else None, protected=given.art.rgb)
    viewer = next((e for e in primary if e.has_decoder), None)
    if viewer is None:
        viewer = next((e for e in _decoders_found(device, primary[0].dtype) if e not in primary), None)
    if viewer is None:
        notes.append("what the model sees not shown: no decoder on this machine")
        return visuals
    visuals.decoder_name = viewer.name
    visuals.model_sees_protected = model_view(viewer, given.art.rgb)
    if given.exact:
        visuals.model_sees_original = model_view(viewer, given.orig.rgb)
    return visuals


def _decoders_found(device, dtype: torch.dtype) -> list[Encoder]:
    out = []
    for entry in find_models(hooks()):
        if entry.decoder:
            try:
                out.append(load_encoders([entry], hooks(), device=device, dtype=dtype)[0])
            except FixativeError:
                continue
    return [e for e in out if e.has_decoder]


def _entry_key(source: str) -> str:
    try:
        return str(Path(source).resolve())
    except OSError:
        return source
