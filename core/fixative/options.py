"""Every option of a protection, defined once.

``fixative.protect``, the command line (argparse), the engine's request parsing and ``GET /options``, the
ComfyUI node inputs and the editor plug-ins' choices are all derived from the two models below, so adding
an option means writing its ``Field`` here and the code that uses it, nothing else. Each field says which
hosts show it (``hosts``); the names of methods, presets and formats live here (presets' numbers live in
``presets``).

No torch here: ``fixative --help`` and argument errors stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import BadParameterError
from .presets import INTENSITIES, QUALITIES

METHODS = ("style", "concept", "edit")
INTENSITY_NAMES = tuple(INTENSITIES)
QUALITY_NAMES = tuple(QUALITIES)
FORMATS = ("png", "jpg", "webp", "tif")
FORMAT_ALIASES = {"jpeg": "jpg", "jpe": "jpg", "tiff": "tif"}
FORMAT_SUFFIXES = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif"}
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
OPTIMIZERS = ("pgd", "adam")
MAX_STEPS = 10_000

# Where an option is offered. Editors (Krita, GIMP) and the web page read ``editor_choices()`` through
# the engine (``GET /options``, ``?host=web`` for the page); "batch" is the folder runners (CLI folders, Ray).
CLI, SERVER, COMFYUI, EDITORS, BATCH, WEB = "cli", "server", "comfyui", "editors", "batch", "web"
EVERYWHERE = (CLI, SERVER, COMFYUI, EDITORS, WEB)

LABELS: dict[str, dict[str, str]] = {
    "method": {
        "style": "Style cloak (against style mimicry)",
        "concept": "Concept poison (against concept training)",
        "edit": "Edit shield (against img2img and inpainting)",
    },
    "intensity": {"low": "Low (least visible)", "default": "Default", "high": "High (strongest)"},
    "quality": {"fast": "Fast", "default": "Default", "slow": "Slow (most robust)"},
    "format": {"png": "PNG", "jpg": "JPEG", "webp": "WebP", "tif": "TIFF"},
}


def option(
    default: Any,
    description: str,
    *,
    hosts: tuple[str, ...] = EVERYWHERE,
    flag: str = "",
    suggest: tuple[str, ...] = (),
    label: str = "",
    unset: str = "",
    **kw,
):
    """A field with its help text and the hosts that offer it (``flag``: the CLI flag, when not --name;
    ``label``: the name a form shows, when not the field's; ``unset``: what leaving it empty means)."""
    extra: dict[str, Any] = {"hosts": list(hosts)}
    for key, value in (("flag", flag), ("suggest", list(suggest)), ("label", label), ("unset", unset)):
        if value:
            extra[key] = value
    return Field(default, description=description, json_schema_extra=extra, **kw)


class ProtectOptions(BaseModel):
    """What ``fixative.protect`` does with one image (images themselves - target, mask - are inputs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal[METHODS] = option(
        "style", "style: cloak the style; concept: poison the concept (needs an anchor); edit: shield edits"
    )
    intensity: Literal[INTENSITY_NAMES] = option("default", "the perceptual budget: how much may change")
    quality: Literal[QUALITY_NAMES] = option("default", "the effort: steps and robustness to purification")
    models: list[str] | None = option(
        None,
        "encoder file, folder, name or hub id; repeat for an ensemble (default: the best one found)",
        hosts=(CLI, SERVER, EDITORS),
        flag="--model",
    )
    concept: str | None = option(
        None, "concept poison: the caption the image keeps (e.g. 'dog')", hosts=(CLI, SERVER, COMFYUI, WEB)
    )
    anchor: str | None = option(
        None, "concept poison: the other concept, for a text2img anchor with --pipeline", hosts=(CLI, SERVER)
    )
    style: str | None = option(
        None,
        "style cloak: built-in style (charcoal, pop, mosaic) or an img2img prompt",
        hosts=(CLI, SERVER, WEB),
        suggest=("charcoal", "pop", "mosaic"),
    )
    pattern: str | None = option(
        None,
        "edit shield target: grey (default, as PhotoGuard) or pattern",
        hosts=(CLI, SERVER, WEB),
        suggest=("grey", "pattern"),
    )
    pipeline: str | None = option(
        None, "local diffusers pipeline folder for img2img/text2img targets", hosts=(CLI, SERVER)
    )
    max_side: int | None = option(
        None, "protect and write a copy at most this many pixels on its longest side: the size you post "
        "(a site's smaller copy of a full-size protection keeps 2-5x less)", hosts=(CLI, SERVER, BATCH, WEB),
        ge=64, le=65535, label="Longest side posted (px)", unset="full size",
    )  # fmt: skip
    steps: int | None = option(None, "optimisation steps instead of the quality preset's", ge=1, le=MAX_STEPS)
    epsilon: float | None = option(
        None, "hard L-infinity cap per channel, in 0..1 (default: the intensity's)", hosts=(SERVER,),
        gt=0, le=64 / 255,
    )  # fmt: skip
    optimizer: Literal[OPTIMIZERS] = option("pgd", "signed-gradient PGD or Adam", hosts=(CLI, SERVER))
    lpips_weight: float | None = option(
        None, "weight of the LPIPS penalty (needs LPIPS's weights on this machine)", hosts=(SERVER,), ge=0
    )
    jnd_scale: float | None = option(
        None, "per-pixel budget in just-noticeable differences (default: the intensity's)",
        hosts=(CLI, SERVER), gt=0, le=8,
    )  # fmt: skip
    texture_aware: bool = option(
        True, "shape the budget by a visual model (flat areas get least); off: the cap alone", hosts=(SERVER,)
    )
    tile: int | None = option(
        None, "tile size in pixels: memory is bounded by it (default per model)", hosts=(CLI, SERVER), ge=64
    )
    tile_batch: int | None = option(
        None, "tiles per encoder call (default: 1 on a CPU, 4 on a GPU); more uses more memory",
        hosts=(CLI, SERVER), ge=1, le=64,
    )  # fmt: skip
    device: str | None = option(None, "cpu (default), cuda, cuda:N, mps or auto", hosts=(CLI, SERVER))
    dtype: Literal[PRECISIONS] = option(
        "auto", "numeric precision of the encoders; auto: bf16 on a CPU that computes it natively "
        "(measured: half the time, figures within 0.003), else fp32", hosts=(CLI, SERVER), flag="--precision",
    )  # fmt: skip
    seed: int = option(0, "random seed (same seed, same result)", ge=0, le=2**64 - 1)
    allow_download: bool = option(False, "allow fetching a hub model once", hosts=(CLI,))

    @field_validator("models", mode="before")
    @classmethod
    def _one_model_is_a_list(cls, value):
        if isinstance(value, str):
            return [value] if value.strip() else None
        if isinstance(value, (list, tuple)) and not value:
            return None
        return value

    @classmethod
    def parse(cls, values: dict | None = None, **overrides):
        """Validated options from a dict and/or keywords; a bad value is one ``BadParameterError`` line."""
        data = {k: v for k, v in {**(values or {}), **overrides}.items() if v is not None}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise BadParameterError(describe(exc)) from None

    def engine_options(self) -> ProtectOptions:
        """Only the protection options (a ``JobOptions`` less what the host does with the result)."""
        fields = set(ProtectOptions.model_fields)
        return ProtectOptions.model_validate(self.model_dump(include=fields))

    def recorded(self) -> dict:
        """What goes into the file's metadata and the report: every option that differs from its default."""
        return self.model_dump(exclude_defaults=True, exclude={"device", "allow_download"})


class JobOptions(ProtectOptions):
    """A protection plus what the host does with its result (file format, verification, preview)."""

    format: Literal[FORMATS] = option("png", "output format", hosts=(CLI, SERVER, EDITORS, WEB))
    jpeg_quality: int = option(95, "JPEG/WebP quality of the written file", hosts=(SERVER,), ge=1, le=100)
    check: bool = option(
        False,
        "run a quick check after protecting and report its verdict",
        hosts=(CLI, SERVER),
        flag="--verify",
    )
    preview: bool = option(False, "add what the model sees to the report", hosts=(SERVER,))
    lease_seconds: float | None = option(
        None, "cancel the job when nobody asks about it for this long", hosts=(SERVER,), gt=0
    )
    overwrite: bool = option(False, "replace existing outputs (never inputs)", hosts=(CLI, BATCH))
    skip_existing: bool = option(
        False, "skip inputs whose protected copy (same input, same options) exists; redo broken ones",
        hosts=(CLI, BATCH),
    )  # fmt: skip

    @field_validator("format", mode="before")
    @classmethod
    def _format_alias(cls, value):
        if isinstance(value, str):
            value = value.lower().lstrip(".")
            return FORMAT_ALIASES.get(value, value)
        return value

    @property
    def suffix(self) -> str:
        return FORMAT_SUFFIXES[self.format]


def describe(error: ValidationError) -> str:
    """The first problem of a validation error as one line: ``steps: input should be ... (got 0)``."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "options"
    message = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        known = ", ".join(sorted(JobOptions.model_fields))
        return f"unknown option {where!r}; known: {known}"
    if first.get("type") == "literal_error":
        allowed = first.get("ctx", {}).get("expected", "")
        return f"{where}: {first.get('input')!r} is not one of {allowed}"
    got = first.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return f"{where}: {message[0].lower()}{message[1:]}{shown}"


def offered_to(host: str, model: type[BaseModel] = JobOptions) -> dict[str, Any]:
    """The fields a host offers, name -> pydantic FieldInfo, in definition order."""
    return {
        name: info
        for name, info in model.model_fields.items()
        if host in ((info.json_schema_extra or {}).get("hosts") or [])
    }


def choices_of(name: str, model: type[BaseModel] = JobOptions) -> tuple:
    """The allowed values of a Literal option (``()`` for free-form ones)."""
    annotation = model.model_fields[name].annotation
    return (
        tuple(getattr(annotation, "__args__", ()))
        if getattr(annotation, "__origin__", None) is Literal
        else ()
    )


def editor_choices(host: str = EDITORS) -> dict:
    """What the editor plug-ins and the web page build their controls from (served at ``GET /options``).

    Plain JSON, so the standard-library client can carry a copy of it (``fixative_client.BUNDLED_OPTIONS``).
    """
    out: dict[str, Any] = {}
    for name, info in offered_to(host).items():
        entry: dict[str, Any] = {"default": info.default, "help": info.description}
        for key in ("suggest", "label", "unset"):
            if (info.json_schema_extra or {}).get(key):
                entry[key] = info.json_schema_extra[key]
        values = choices_of(name)
        if values:
            entry["choices"] = [{"value": v, "label": LABELS.get(name, {}).get(v, v)} for v in values]
        for item in info.metadata:
            for bound in ("ge", "le", "gt", "lt"):
                if getattr(item, bound, None) is not None:
                    entry[bound] = getattr(item, bound)
        out[name] = entry
    return out


def output_path_for(source: str | Path, out_dir: str | Path | None = None, suffix: str = ".png") -> Path:
    """Where a protected copy goes by default: ``NAME.protected.png`` beside the input, or in ``out_dir``."""
    source = Path(source)
    folder = Path(out_dir) if out_dir else source.parent
    return folder / f"{source.stem}.protected{suffix}"
