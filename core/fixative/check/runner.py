"""``fixative.check``: how protected is this file, and does the protection survive purification?

The figures come from the same ``fixative.features.strength`` the optimiser and ``protect`` report, so a
check of a fresh file agrees with what ``protect`` printed. With the original the measurement is exact;
without it, the original is *estimated* (see ``estimate_original``) and the verdict asks for a margin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import __version__, features
from ..errors import BadImageError, FixativeError, ModelNotFoundError
from ..load import Artwork, to_artwork
from ..models import Encoder, find_models, load_encoders
from ..target import Target, TargetRequest, make_target
from . import purify
from .measures import perceptual

SCHEMA_VERSION = 1
# Documented thresholds (docs/check.md). Random noise of the same L-infinity scores about 0.1 on taef2.
PROTECTED_STRENGTH = 0.30  # strength on every protecting encoder needed to call a file protected
SURVIVES_STRENGTH = 0.15  # strength left after a purification for the protection to count as surviving it
ESTIMATE_MARGIN = 0.10  # extra strength asked of an estimate (no original): it runs slightly high
VIEW_LONGEST = 512  # "what the model sees" is decoded at most this large (it is a picture, not a figure)


@dataclass
class Visuals:
    """Pixels for the HTML report, (3, H, W) 0..1; ``None`` where they could not be made."""

    original: torch.Tensor | None
    protected: torch.Tensor
    model_sees_original: torch.Tensor | None = None
    model_sees_protected: torch.Tensor | None = None
    decoder_name: str | None = None


@dataclass
class _Probe:
    """One encoder with its tiles and fixed target features, ready to score any version of the image."""

    encoder: Encoder
    tiles: list
    target: list[torch.Tensor]
    extra: dict = field(default_factory=dict)

    def feats(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images[None].to(self.encoder.device)
        with torch.no_grad():
            return [self.encoder(t.crop(x)) for t in self.tiles]

    def strength(self, protected: torch.Tensor, original: torch.Tensor) -> tuple[float, float, float]:
        p, o = self.feats(protected), self.feats(original)
        before, after = features.distance(o, self.target), features.distance(p, self.target)
        return features.strength(p, o, self.target), before, after


def _probe(encoder: Encoder, goal: Target, reference: torch.Tensor, tile: int) -> _Probe:
    """Target features per tile; ``reference`` is the original (or its stand-in) the target is built on."""
    dev = encoder.device
    ref = reference[None].to(dev)
    tile_list = features.tiles(ref.shape[-2], ref.shape[-1], tile)
    timg = None if goal.image is None else goal.image[None].to(dev)
    target = [goal.features(encoder, t.crop(ref), None if timg is None else t.crop(timg)) for t in tile_list]
    return _Probe(encoder, tile_list, target)


def _style_name(meta_target: dict) -> str | None:
    details = meta_target.get("details") or {}
    if details.get("style"):
        return details["style"]
    description = meta_target.get("description", "")
    return description.split("'")[1] if description.count("'") >= 2 else None


def rebuild_target(
    meta_target: dict,
    artwork: torch.Tensor,
    seed: int = 0,
    target_image=None,
    pipeline: str | None = None,
    device: torch.device | None = None,
) -> Target | None:
    """The target ``protect`` used, rebuilt from the metadata (plus the user's target image when it was
    one), on ``artwork`` (the original, or a stand-in). ``None`` when the metadata is not enough."""
    method, kind = meta_target.get("method"), meta_target.get("kind")
    details = meta_target.get("details") or {}
    image = None if target_image is None else to_artwork(target_image, "target").rgb
    request = TargetRequest(
        method=method or "",
        artwork=artwork,
        image=image,
        seed=seed,
        device=device or torch.device("cpu"),
        pipeline=pipeline,
        concept=meta_target.get("caption"),
    )
    if method == "style" and kind == "procedural":
        request.style = _style_name(meta_target)
    elif method == "style" and kind == "img2img":
        request.style = details.get("prompt")
    elif method == "concept":
        request.anchor = details.get("anchor") or None
    elif method == "edit" and kind != "image":
        request.pattern = details.get("pattern", kind)
    needs_image = kind in ("style-image", "anchor-image", "image")
    needs_pipeline = kind in ("img2img", "text2img")
    if (needs_image and image is None) or (needs_pipeline and not pipeline):
        return None
    if image is not None and not needs_image:
        return None
    try:
        goal = make_target(request)
    except FixativeError:
        return None
    return goal if goal.kind == kind else None


def estimate_original(
    protected: torch.Tensor, probes: list[_Probe], epsilon: float, steps: int = 4
) -> torch.Tensor:
    """A stand-in for the missing original: the protected image pushed *away* from the target by signed
    gradient steps inside half the recorded budget (the real original lies within the budget of the
    protected file). On our test images the estimate came within 0.1 of the exact strength (0.01-0.02
    above it for style cloaks, 0.09 below for an edit shield); verdicts from an estimate therefore ask
    for ``ESTIMATE_MARGIN`` more, so an estimate errs toward "not protected".
    """
    radius = epsilon / 2
    x = protected.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = 0.0
        for probe in probes:
            xi = x[None].to(probe.encoder.device)
            for t, target in zip(probe.tiles, probe.target, strict=True):
                loss = loss + (probe.encoder(t.crop(xi)) - target).pow(2).mean()
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = protected + (x + radius / 2 * grad.sign() - protected).clamp(-radius, radius)
            x = x.clamp(0, 1)
    return x.detach()


def feature_shift(encoder: Encoder, original: torch.Tensor, protected: torch.Tensor, tile: int) -> float:
    """How far the features moved at all, target aside: D(protected, original) / mean square of the
    original's features (0 = unchanged). Measurable whenever the original is, even without metadata."""
    o = features.encode(encoder, original[None].to(encoder.device), tile)
    p = features.encode(encoder, protected[None].to(encoder.device), tile)
    scale = sum(float(x.pow(2).sum()) for x in o) / max(1, sum(x.numel() for x in o))
    return features.distance(p, o) / max(scale, 1e-12)


def _entry_key(source: str) -> str:
    try:
        return str(Path(source).resolve())
    except OSError:
        return source


def _protecting_encoders(metadata: dict | None, models, device, notes: list[str]) -> list[Encoder]:
    if models:
        return load_encoders(models, device=device)
    recorded = (metadata or {}).get("encoders") or []
    names = (metadata or {}).get("encoder_names") or []
    found = []
    for i, source in enumerate(recorded):
        for spec in (source, names[i] if i < len(names) else None):
            if not spec:
                continue
            try:
                found.append(load_encoders([spec], device=device)[0])
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
    encoders = load_encoders(None, device=device)
    if recorded:
        notes.append(f"measured with {encoders[0].name} instead")
    return encoders


def _transfer_encoders(primary: list[Encoder], device, notes: list[str]) -> list[Encoder]:
    used = {_entry_key(e.source) for e in primary if e.source}
    out = []
    for entry in find_models():
        if _entry_key(entry.source) in used:
            continue
        try:
            out.append(load_encoders([entry], device=device, with_decoder=False)[0])
        except FixativeError as exc:
            notes.append(f"transfer: could not load {entry.name} ({exc})")
    if not out:
        notes.append("transfer not measured: no encoder other than the protecting one(s) was found")
    return out


def _verdict(strength: float | None, robustness: list[dict], exact: bool) -> tuple[str, str]:
    if strength is None:
        return "not measured", "the strength could not be measured (see notes)"
    needed = PROTECTED_STRENGTH + (0 if exact else ESTIMATE_MARGIN)
    if strength < needed:
        return "not protected", f"strength {strength:.2f} is below {needed:.2f}"
    measured = [r for r in robustness if r.get("strength") is not None]
    broken = sorted((r for r in measured if r["strength"] < SURVIVES_STRENGTH), key=lambda r: r["strength"])
    if broken:
        worst = broken[0]
        return (
            f"weakened by {worst['purification']}",
            f"strength {strength:.2f}, but {len(broken)} purification(s) leave less than "
            f"{SURVIVES_STRENGTH:.2f} (worst: {worst['purification']}, {worst['strength']:.2f})",
        )
    return "protected", (
        f"strength {strength:.2f} (>= {needed:.2f}) and at least {SURVIVES_STRENGTH:.2f} "
        f"left after each of {len(measured)} purification(s)"
    )


def model_view(encoder: Encoder, rgb: torch.Tensor) -> torch.Tensor:
    """What the model sees: decoder(encoder(x)) at a picture-sized resolution (hosts show it too)."""
    x = rgb[None].float()
    h, w = x.shape[-2:]
    scale = min(1.0, VIEW_LONGEST / max(h, w))
    size = (max(16, round(h * scale)), max(16, round(w * scale)))
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="area")
    m = int(getattr(encoder, "downscale", 8))
    ph, pw = (-size[0]) % m, (-size[1]) % m
    padded = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
    with torch.no_grad():
        out = encoder.decode(encoder(padded.to(encoder.device)))
    return out[0, :, : size[0], : size[1]].float().cpu()


def run_check(
    protected,
    original=None,
    models=None,
    device: str | torch.device | None = "cpu",
    fast: bool = False,
    target_image=None,
    pipeline: str | None = None,
    purifications: list[purify.Purification] | None = None,
    impress_steps: int = 20,
    transfer: bool | None = None,
    tile: int = features.DEFAULT_TILE,
) -> tuple[dict, Visuals]:
    """The check and the pixels its HTML report shows. See ``check`` for the arguments."""
    started = time.perf_counter()
    art: Artwork = to_artwork(protected, "protected")
    notes: list[str] = list(art.notes)
    meta = art.metadata
    orig: Artwork | None = None if original is None else to_artwork(original, "original")
    if meta is None and orig is None:
        raise BadImageError(
            f"{art.source or 'image'}: no Fixative metadata in this file (not protected by "
            "Fixative, or an editor/site stripped it) and no --original given, so nothing "
            "can be measured; pass --original ORIG to measure perceptual cost and feature "
            "shift"
        )
    if orig is not None and orig.rgb.shape != art.rgb.shape:
        raise BadImageError(
            f"original is {orig.size[0]}x{orig.size[1]} but the protected image is "
            f"{art.size[0]}x{art.size[1]}; give the exact original it was made from"
        )
    exact = orig is not None
    p = art.rgb
    o = orig.rgb if orig is not None else None
    primary = _protecting_encoders(meta, models, device, notes)
    dev = primary[0].device
    meta_target = (meta or {}).get("target")
    seed = int((meta or {}).get("seed", 0))
    goal = None
    target_info: dict = {"recorded": meta_target, "rebuilt": False, "hash_match": None}
    if meta_target:
        goal = rebuild_target(meta_target, o if o is not None else p, seed, target_image, pipeline, dev)
        if goal is None:
            kind = meta_target.get("kind")
            need = (
                "the pipeline folder (--pipeline)"
                if kind in ("img2img", "text2img")
                else "the same target image (--target)"
            )
            notes.append(
                f"strength not measured: the target ({meta_target.get('description', kind)}) cannot "
                f"be rebuilt from the metadata alone; pass {need} used when protecting"
            )
        else:
            target_info["rebuilt"] = True
            if exact:
                target_info["hash_match"] = goal.hash == meta_target.get("hash")
                if not target_info["hash_match"]:
                    notes.append(
                        "the rebuilt target's hash differs from the recorded one: the original or "
                        "target image given is not exactly the one protected; figures are "
                        "approximate"
                    )
    else:
        notes.append(
            "no Fixative metadata: the target is unknown, so strength cannot be measured; "
            "perceptual cost and feature shift against the original are shown"
        )
    if not exact and goal is not None and goal.image is not None and goal.latent_transform is None:
        notes.append(
            "no original given: the target was rebuilt on the protected image and the original "
            "estimated; strengths are estimates (verdict asks for a margin)"
        )
    elif not exact and goal is not None:
        notes.append(
            "no original given: the original was estimated; strengths are estimates "
            "(verdict asks for a margin)"
        )

    probes = [_probe(e, goal, o if o is not None else p, tile) for e in primary] if goal is not None else []
    if goal is not None and o is None:
        epsilon = float(((meta or {}).get("budget") or {}).get("epsilon_255", 8)) / 255
        o = estimate_original(p, probes, epsilon)
    encoder_rows = []
    for encoder, probe in zip(primary, probes or [None] * len(primary), strict=True):
        row = {
            "name": encoder.name,
            "family": encoder.family,
            "source": encoder.source,
            "used_to_protect": True,
        }
        if probe is not None:
            s, before, after = probe.strength(p, o)
            row.update(strength=round(s, 4), distance_before=round(before, 5), distance_after=round(after, 5))
        else:
            row.update(strength=None, distance_before=None, distance_after=None)
        if orig is not None:
            row["feature_shift"] = round(feature_shift(encoder, orig.rgb, p, tile), 5)
        encoder_rows.append(row)
    strengths = [r["strength"] for r in encoder_rows if r["strength"] is not None]
    strength = min(strengths) if strengths else None

    robustness: list[dict] = []
    chosen = purifications if purifications is not None else purify.standard(impress_steps)
    if fast and purifications is None:
        chosen = [c for c in chosen if c.fast]
    if probes:
        decoder_encoder = next((e for e in primary if e.has_decoder), None)
        for item in chosen:
            row = {"purification": item.name, "strength": None, "per_encoder": {}}
            try:
                if item.needs == "decoder":
                    if decoder_encoder is None:
                        raise purify.PurificationUnavailable("needs a decoder; none of the encoders has one")
                    pp = item.apply(p, decoder_encoder)
                    oo = o if item.baseline == "original" else item.apply(o, decoder_encoder)
                else:
                    pp = item.apply(p)
                    oo = o if item.baseline == "original" else item.apply(o)
            except purify.PurificationUnavailable as exc:
                row["skipped"] = str(exc)
                notes.append(f"{item.name} skipped: {exc}")
                robustness.append(row)
                continue
            for probe in probes:
                row["per_encoder"][probe.encoder.name] = round(probe.strength(pp, oo)[0], 4)
            row["strength"] = min(row["per_encoder"].values())
            row["survives"] = row["strength"] >= SURVIVES_STRENGTH
            robustness.append(row)

    transfer_rows: list[dict] = []
    if transfer is None:
        transfer = not fast
    if transfer and goal is not None:
        for encoder in _transfer_encoders(primary, device, notes):
            probe = _probe(encoder, goal, orig.rgb if orig is not None else p, tile)
            s, before, after = probe.strength(p, o)
            transfer_rows.append(
                {
                    "name": encoder.name,
                    "family": encoder.family,
                    "source": encoder.source,
                    "strength": round(s, 4),
                    "distance_before": round(before, 5),
                    "distance_after": round(after, 5),
                }
            )

    measures = None
    if orig is not None:
        measures = perceptual(orig.rgb, p)
        if measures["lpips"] is None:
            notes.append("LPIPS not measured: its AlexNet weights are not on this machine")
    else:
        budget = ((meta or {}).get("budget") or {}).get("epsilon_255")
        notes.append(
            "perceptual cost not measured: it needs the original (--original)"
            + (f"; the recorded budget was L∞ ≤ {budget}/255" if budget is not None else "")
        )

    visuals = Visuals(original=orig.rgb if orig is not None else None, protected=p)
    if not fast:
        viewer = next((e for e in primary if e.has_decoder), None)
        if viewer is None:
            viewer = next((e for e in _decoders_found(device) if e not in primary), None)
        if viewer is not None:
            visuals.decoder_name = viewer.name
            visuals.model_sees_protected = model_view(viewer, p)
            if orig is not None:
                visuals.model_sees_original = model_view(viewer, orig.rgb)
        else:
            notes.append("what the model sees not shown: no decoder on this machine")

    verdict, reason = _verdict(strength, robustness, exact)
    result = {
        "schema": SCHEMA_VERSION,
        "fixative": __version__,
        "file": art.source,
        "original": None if orig is None else orig.source,
        "size": list(art.size),
        "verdict": verdict,
        "verdict_reason": reason,
        "exact": exact,
        "fast": fast,
        "strength": None if strength is None else round(strength, 4),
        "thresholds": {
            "protected": PROTECTED_STRENGTH,
            "survives": SURVIVES_STRENGTH,
            "estimate_margin": ESTIMATE_MARGIN,
        },
        "encoders": encoder_rows,
        "perceptual": measures,
        "robustness": robustness,
        "transfer": transfer_rows,
        "target": target_info,
        "metadata": meta,
        "model_sees": visuals.decoder_name,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return result, visuals


def _decoders_found(device) -> list[Encoder]:
    out = []
    for entry in find_models():
        if entry.decoder:
            try:
                out.append(load_encoders([entry], device=device)[0])
            except FixativeError:
                continue
    return [e for e in out if e.has_decoder]


def check(
    protected,
    original=None,
    models=None,
    device: str | torch.device | None = "cpu",
    fast: bool = False,
    target=None,
    pipeline: str | None = None,
    impress_steps: int = 20,
    transfer: bool | None = None,
    purifications: list[purify.Purification] | None = None,
    json_path: str | Path | None = None,
    html_path: str | Path | None = None,
) -> dict:
    """Measure a protected image: per-encoder strength, perceptual cost, strength after each purification,
    transfer to encoders not used to protect, notes about what could not be measured, and a verdict
    ("protected", "weakened by <purification>", "not protected", or "not measured").

    ``protected``/``original`` accept what ``protect`` accepts (path, bytes, PIL, array, tensor); without
    ``original`` the figures are estimates. ``models`` overrides the encoders recorded in the file.
    ``target`` is the style/anchor/target image given to ``protect``, when it used one. ``fast`` runs the
    quick subset ``protect --verify`` uses (two purifications, no transfer, no pictures).
    ``purifications`` replaces the standard list (``fixative.check.purify.standard()``).
    """
    result, visuals = run_check(
        protected,
        original,
        models,
        device,
        fast,
        target,
        pipeline,
        purifications=purifications,
        impress_steps=impress_steps,
        transfer=transfer,
    )
    if json_path:
        from .report import write_json

        write_json(result, json_path)
    if html_path:
        from .html_report import write_html

        write_html(result, visuals, html_path)
    return result
