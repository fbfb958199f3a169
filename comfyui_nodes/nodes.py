"""The Fixative nodes: Protect Image, Load Protection Encoder, Check Protection, Concept Poison Caption.

ComfyUI passes IMAGE as float tensors [B, H, W, C] in 0..1 and MASK as [B, H, W] (1 = selected), runs
every node under ``torch.inference_mode()``, reports progress through ``comfy.utils.ProgressBar`` and
signals Cancel through ``comfy.model_management``. These nodes keep to all of that; ComfyUI modules are
only touched inside the node functions (see ``host.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from . import host
from .vae_encoder import encoder_from_vae, trainable

CATEGORY = "Fixative"
ENCODER_TYPE = "FIXATIVE_ENCODER"  # a list of fixative.models.Encoder: several chained = an ensemble
MODEL_FOLDERS = ("vae_approx", "vae", "checkpoints")


def schema_inputs() -> tuple[dict, dict]:
    """The node's widgets, derived from the options schema (fields offered to ComfyUI): required ones have
    a default, optional ones do not. An integer left at 0 means "as the preset"."""
    from fixative.options import COMFYUI, ProtectOptions, choices_of, offered_to

    required, optional = {}, {}
    for name, info in offered_to(COMFYUI, ProtectOptions).items():
        tip = {"tooltip": info.description}
        values = choices_of(name, ProtectOptions)
        bounds = {
            k: getattr(m, k) for m in info.metadata for k in ("ge", "le") if getattr(m, k, None) is not None
        }
        if values:
            spec = (list(values), {"default": info.default, **tip})
        elif "int" in str(info.annotation):
            low = bounds.get("ge", 0) if info.default is not None else 0  # 0: unset
            spec = (
                "INT",
                {"default": info.default or 0, "min": low, "max": bounds.get("le", 2**31 - 1), **tip},
            )
        else:
            spec = ("STRING", {"default": "", **tip})
        (required if info.default is not None else optional)[name] = spec
    return required, optional


def _engine_values(values: dict) -> dict:
    """Widget values as protect options: empty strings and 0 mean "not set"."""
    return {k: v for k, v in values.items() if v not in ("", 0) or k == "seed"}


def _fail(message: str):
    from fixative.errors import BadParameterError

    return BadParameterError(message)


def _rgb(images: torch.Tensor, index: int) -> torch.Tensor:
    """Image ``index`` of a ComfyUI batch (wrapping round, as ComfyUI repeats short batches) as (3, H, W)."""
    return images[index % images.shape[0], ..., :3].permute(2, 0, 1).float().contiguous()


def _mask_for(mask: torch.Tensor | None, index: int, height: int, width: int) -> torch.Tensor | None:
    """ComfyUI MASK ([B, H, W] or [H, W], 1 = selected) -> (H, W) in 0..1; it must be the image's size
    (stretching a mask of another image would protect the wrong places)."""
    if mask is None:
        return None
    m = mask.float()
    if m.ndim == 2:
        m = m[None]
    m = m[index % m.shape[0]]
    if tuple(m.shape) != (height, width):
        raise ValueError(
            f"Fixative: the mask is {m.shape[1]}x{m.shape[0]} but the image is {width}x{height}; "
            "give a mask of the image's size (ComfyUI's ImageToMask / resize nodes make one)"
        )
    return m.clamp(0, 1).contiguous()


def on_grid(rgb: torch.Tensor) -> torch.Tensor:
    """The values stock ``SaveImage`` would write (it truncates ``255 * x``), as exact k/255 floats."""
    return torch.floor(rgb.clamp(0, 1) * 255 + 1e-3) / 255


def _default_encoders(device: torch.device, dtype: torch.dtype):
    """The best encoder in ComfyUI's own model folders: a tiny TAESD on the CPU, a full VAE on a GPU."""
    from fixative.models import load_encoders
    from fixative.models.discovery import probe
    from fixative.plugins import hooks

    entries = []
    for folder in ("vae_approx", "vae"):
        for name in host.filename_list(folder):
            if "decoder" in Path(name).stem:
                continue
            path = host.full_path(folder, name)
            entry = probe(Path(path), hooks()) if path else None
            if entry is not None and entry.kind in ("tiny", "kl"):
                entries.append(entry)
    if not entries:  # Fixative's own search path, or its one-line "how to get a model" error
        return load_encoders(None, hooks(), device=device, dtype=dtype)
    prefer_tiny = device.type == "cpu"
    entries.sort(key=lambda e: ((e.kind == "tiny") != prefer_tiny, e.decoder is None, e.source))
    return load_encoders([entries[0]], hooks(), device=device, dtype=dtype)


def _encoders(vae, encoder, device: torch.device, dtype: torch.dtype, with_decoder: bool) -> list:
    """The VAE on the wire first, then any chained encoders; ComfyUI's model folders when neither is given."""
    found = []
    if vae is not None:
        found.append(encoder_from_vae(vae, device, dtype, with_decoder=with_decoder))
    for item in encoder or []:
        found.append(trainable(item))
    if not found:
        found = [trainable(e) for e in _default_encoders(device, dtype)]
    return found


def _make_room(encoders: list, device: torch.device, pixels: int) -> None:
    """Ask ComfyUI to unload what it must so the optimisation fits (a tile of 512 px at most)."""
    weights = sum(p.numel() * p.element_size() for e in encoders for p in e.parameters())
    per_pixel = sum(1536 if "ta" in e.family else 6144 for e in encoders)
    host.make_room(device, 2 * weights + min(pixels, 512 * 512) * per_pixel)


def _summary(reports: list[dict], method: str, intensity: str) -> str:
    """The node's report text: what ran, then each image's measured figures beside their null (the line
    every Fixative host shows, ``fixative_client.summarise``)."""
    from fixative.fixative_client import summarise

    lines = [f"protected {len(reports)} image(s) with {method} ({intensity})"]
    lines += [f"image {k + 1}: {summarise(report)}" for k, report in enumerate(reports)]
    return "\n".join(lines)


class ProtectImage:
    """Protect images against style mimicry / concept poisoning / edits, right before Save Image."""

    DESCRIPTION = (
        "Adds a perturbation, at the default under one just-noticeable difference of a standard visual "
        "model, that moves what a diffusion model's encoder (and its decoder's picture) sees toward a "
        "target; the report measures how far and how visible. Connect your model's VAE."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's name
        required, optional = schema_inputs()
        return {
            "required": {"image": ("IMAGE",), **required},
            "optional": {
                "vae": ("VAE", {"tooltip": "protect in this VAE's latent space (TAESD or AutoencoderKL)"}),
                "encoder": (ENCODER_TYPE, {"tooltip": "encoders from Load Protection Encoder (an ensemble)"}),
                "target": ("IMAGE", {"tooltip": "style image, concept anchor image, or edit target"}),
                "mask": ("MASK", {"tooltip": "where the perturbation may go (1 = allowed)"}),
                **optional,
            },
        }

    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("image", "report")
    FUNCTION = "protect"
    CATEGORY = CATEGORY

    def protect(self, image, vae=None, encoder=None, target=None, mask=None, **values):
        import fixative
        from fixative.errors import Cancelled
        from fixative.options import ProtectOptions
        from fixative.presets import quality as quality_preset

        options = ProtectOptions.parse(_engine_values(values))
        if options.method == "concept" and target is None:
            raise _fail("concept poison needs an anchor image of the other concept: connect it to 'target'")
        device, dtype = host.device_and_dtype()
        per_image = options.steps or quality_preset(options.quality).steps
        batch, height, width = image.shape[0], image.shape[1], image.shape[2]
        reports = []
        with host.released_memory(), host.gradients_allowed():
            pixels = on_grid(image.detach().float().cpu().clone())  # an ordinary tensor, not an inference one
            out = pixels.clone()
            encoders = _encoders(vae, encoder, device, dtype, with_decoder=False)
            _make_room(encoders, device, height * width)
            bar = host.progress_bar(batch * per_image)
            for b in range(batch):

                def on_step(done: int, total: int, info: dict, offset: int = b * per_image) -> None:
                    bar.update_absolute(offset + round(per_image * min(done, total) / max(total, 1)))

                try:
                    result = fixative.protect(
                        _rgb(pixels, b),
                        options=options,
                        models=encoders,
                        target=None if target is None else _rgb(target.detach().cpu().clone(), b),
                        mask=_mask_for(mask, b, height, width),
                        device=device,
                        dtype=dtype,
                        progress=on_step,
                        cancel=host.interrupted,
                    )
                except Cancelled:
                    host.model_management().throw_exception_if_processing_interrupted()
                    raise host.interrupt_error() from None
                # The engine's pixels are exact k/255 values within the budget of the on-grid input, so
                # ComfyUI's SaveImage (which truncates 255 * x) writes exactly what was measured.
                out[b, ..., :3] = result.rgb.permute(1, 2, 0)
                report = result.report.to_dict()
                report.pop("source", None)
                report["metadata"] = result.metadata  # what a file would carry: Check Protection reads it
                reports.append(report)
                bar.update_absolute((b + 1) * per_image)
            del encoders
        summary = _summary(reports, options.method, options.intensity)
        return (out, json.dumps({"summary": summary, "images": reports}, indent=2, default=str))


class LoadProtectionEncoder:
    """An encoder from ComfyUI's vae, vae_approx or checkpoints folder; chain several for an ensemble."""

    DESCRIPTION = "Loads an image encoder for Protect Image and Check Protection; chain several = ensemble."

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        choices = []
        for folder in MODEL_FOLDERS:
            for name in host.filename_list(folder):
                if folder == "vae_approx" and "decoder" in Path(name).stem:
                    continue  # TAESD decoders are found next to their encoders
                choices.append(f"{folder}/{name}")
        return {"required": {"model": (choices,)}, "optional": {"encoder": (ENCODER_TYPE,)}}

    RETURN_TYPES = (ENCODER_TYPE,)
    RETURN_NAMES = ("encoder",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, model, encoder=None):
        from fixative.models import load_encoders
        from fixative.plugins import hooks

        folder, _, name = model.partition("/")
        path = host.full_path(folder, name) if folder in MODEL_FOLDERS else None
        if path is None:
            raise _fail(f"{model}: not found in ComfyUI's {folder or 'model'} folder")
        device, dtype = host.device_and_dtype()
        with torch.inference_mode(False):  # weights that autograd may use later
            loaded = load_encoders([path], hooks(), device=device, dtype=dtype)
        return (list(encoder or []) + [trainable(e) for e in loaded],)


@torch.no_grad()
def _feature_check(protected: torch.Tensor, original: torch.Tensor | None, encoders: list, seed: int) -> dict:
    """What can be measured without the protection's target: perceptual cost, and how far each
    encoder's features moved compared with matched noise (the same per-pixel |change|, random signs)."""
    from fixative import features
    from fixative.checks.measures import perceptual
    from fixative.checks.null import matched_noise

    if original is None:
        return {"notes": ["connect the original image to measure the change and how far the features moved"]}
    if original.shape != protected.shape:
        raise _fail(f"original is {tuple(original.shape[1:])} but the image is {tuple(protected.shape[1:])}")
    noisy = matched_noise(original, protected, seed)
    per_encoder = []
    for encoder in encoders:
        dev = encoder.device
        o = features.encode(encoder, original[None].to(dev))
        p = features.encode(encoder, protected[None].to(dev))
        n = features.encode(encoder, noisy[None].to(dev))
        moved, baseline = features.distance(p, o), features.distance(n, o)
        per_encoder.append(
            {
                "name": encoder.name,
                "family": encoder.family,
                "feature_shift": round(moved, 6),
                "noise_shift": round(baseline, 6),
                "vs_noise": round(moved / baseline, 3) if baseline > 0 else None,
            }
        )
    return {
        "perceptual": perceptual(original, protected).to_dict(),
        "encoders": per_encoder,
        "notes": [
            "vs_noise: feature shift divided by that of matched noise (same |change|, random signs). It is "
            "not a verdict: without the protection's target any structured change scores above noise (an "
            "unprotected image saved as JPEG 75 scored 3.05, the Great Wave at 256²); the strength toward "
            "the target is in the Protect Image report"
        ],
    }


def _latent_picture(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The first three latent channels stretched to 0..1: a picture of the features without a decoder."""
    z = latents[:, :3].float()
    if z.shape[1] < 3:
        z = z.repeat(1, 3, 1, 1)[:, :3]
    low = z.amin(dim=(2, 3), keepdim=True)
    high = z.amax(dim=(2, 3), keepdim=True)
    z = (z - low) / (high - low).clamp_min(1e-6)
    return F.interpolate(z, size=(height, width), mode="nearest")


def _recorded(report: str | None, batch: int) -> list[dict | None]:
    """Per image, the metadata Protect Image's report recorded (what a file would carry), if connected."""
    if not report:
        return [None] * batch
    try:
        images = json.loads(report)["images"]
        found = [entry.get("metadata") for entry in images]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _fail("'report' is not Protect Image's report; connect its report output") from None
    if len(found) != batch or not all(isinstance(m, dict) for m in found):
        raise _fail(
            f"the report is of {len(found)} image(s) from Protect Image, the batch has {batch}; connect the "
            "report of the same run (from this version of the node)"
        )
    return found


class CheckProtection:
    """Measure a protected image and show what the model's encoder sees in it."""

    DESCRIPTION = "Reports how well an image is protected and decodes what the diffusion model sees."

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {"image": ("IMAGE",)},
            "optional": {
                "original": ("IMAGE",),
                "report": (
                    "STRING",
                    {
                        "forceInput": True,
                        "tooltip": "Protect Image's report: the target and seed it used, so the strength "
                        "toward that target can be measured",
                    },
                ),
                "target": ("IMAGE", {"tooltip": "the target image Protect Image was given, if any"}),
                "vae": ("VAE",),
                "encoder": (ENCODER_TYPE,),
                "thorough": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "all purifications and transfer tests (slow), not the quick subset",
                    },
                ),
            },
        }

    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("report", "model_sees")
    FUNCTION = "check"
    CATEGORY = CATEGORY

    def check(self, image, original=None, vae=None, encoder=None, thorough=False, report=None, target=None):
        import fixative
        from fixative.errors import FixativeError

        device, dtype = host.device_and_dtype()
        batch, height, width = image.shape[0], image.shape[1], image.shape[2]
        reports, seen = [], []
        with host.released_memory(), torch.inference_mode(False):
            pixels = image.detach().float().cpu().clone()
            originals = None if original is None else original.detach().float().cpu().clone()
            encoders = _encoders(vae, encoder, device, dtype, with_decoder=True)
            recorded = _recorded(report, batch)
            goals = None if target is None else target.detach().float().cpu().clone()
            bar = host.progress_bar(batch)
            for b in range(batch):
                if host.interrupted():
                    host.model_management().throw_exception_if_processing_interrupted()
                    raise host.interrupt_error()
                protected = _rgb(pixels, b)
                before = None if originals is None else _rgb(originals, b)
                direct = _feature_check(protected, before, encoders, seed=b)
                direct["measured_by"] = "fixative.features"
                report = direct
                try:
                    checked = fixative.check(
                        protected,
                        original=before,
                        models=encoders,
                        device=device,
                        fast=not thorough,
                        metadata_from=recorded[b],
                        target=None if goals is None else _rgb(goals, min(b, goals.shape[0] - 1)),
                    )
                    report = dict(checked.to_dict(), measured_by="fixative.check", noise_comparison=direct)
                except FixativeError as exc:  # e.g. no original and no metadata: nothing it can measure
                    direct.setdefault("notes", []).append(f"fixative.check could not be used ({exc})")
                reports.append(report)
                seen.append(self._model_sees(protected, encoders, height, width))
                bar.update_absolute(b + 1)
        text = json.dumps({"images": reports} if batch > 1 else reports[0], indent=2, default=str)
        return (text, torch.cat(seen).permute(0, 2, 3, 1).contiguous())

    @staticmethod
    @torch.no_grad()
    def _model_sees(protected: torch.Tensor, encoders: list, height: int, width: int) -> torch.Tensor:
        chosen = next((e for e in encoders if e.has_decoder), encoders[0])
        latents = chosen(protected[None].to(chosen.device))
        if chosen.has_decoder:
            picture = chosen.decode(latents).float()
            if picture.shape[-2:] != (height, width):
                picture = F.interpolate(picture, size=(height, width), mode="bilinear", align_corners=False)
            return picture.clamp(0, 1).cpu()
        return _latent_picture(latents, height, width).cpu()


class ConceptPoisonCaption:
    """The caption a concept-poisoned image is published with: what it shows, not what it poisons toward."""

    DESCRIPTION = (
        "Caption for dataset pipelines: concept poison keeps the image's own caption while its "
        "features point at another concept, so training on the pair teaches the wrong link."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {
                "concept": ("STRING", {"default": "", "tooltip": "what the image shows, e.g. 'a dog'"}),
                "template": ("STRING", {"default": "a picture of {concept}", "multiline": False}),
            },
            "optional": {"tags": ("STRING", {"default": "", "tooltip": "extra comma-separated tags"})},
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("caption",)
    FUNCTION = "caption"
    CATEGORY = CATEGORY

    def caption(self, concept, template="a picture of {concept}", tags=""):
        concept = " ".join(concept.split())
        if not concept:
            raise _fail("give the concept the image shows (the caption it will be trained with)")
        if "{concept}" not in template:
            raise _fail("the caption template must contain {concept}")
        text = template.replace("{concept}", concept).strip()
        extra = [t.strip() for t in tags.split(",") if t.strip()]
        return (", ".join([text, *extra]),)


NODE_CLASS_MAPPINGS = {
    "FixativeProtectImage": ProtectImage,
    "FixativeLoadProtectionEncoder": LoadProtectionEncoder,
    "FixativeCheckProtection": CheckProtection,
    "FixativeConceptPoisonCaption": ConceptPoisonCaption,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "FixativeProtectImage": "Protect Image (Fixative)",
    "FixativeLoadProtectionEncoder": "Load Protection Encoder (Fixative)",
    "FixativeCheckProtection": "Check Protection (Fixative)",
    "FixativeConceptPoisonCaption": "Concept Poison Caption (Fixative)",
}
