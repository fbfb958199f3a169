"""``fixative`` on the command line: protect, check, models, serve, install.

Every user mistake ends as one line on stderr and a non-zero exit; inputs are never overwritten.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from . import __version__
from .errors import BadParameterError, FixativeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
EXIT_ERROR = 2


def _error(message: str) -> None:
    print(f"fixative: error: {message}", file=sys.stderr)


def expand_inputs(items: list[str], recursive: bool = False) -> list[Path]:
    """Files, folders (their images) and globs, in order, without duplicates or earlier outputs."""
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            children = sorted(
                p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            found.extend(p for p in children if ".protected." not in p.name)
        elif path.exists():
            found.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            found.extend(p for p in matches if p.is_file() and ".protected." not in p.name)
        else:
            found.append(path)  # reported as missing when processed
    seen: set[Path] = set()
    return [p for p in found if not (p in seen or seen.add(p))]


def _progress_bars(enabled: bool):
    from tqdm import tqdm

    state: dict = {}

    def on_step(done: int, total: int, info: dict) -> None:
        if not enabled:
            return
        bar = state.get("bar")
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = state["bar"] = tqdm(total=total, desc="  steps", unit="step", leave=False, file=sys.stderr)
        bar.n = done
        if info.get("strength") is not None:
            bar.set_postfix(strength=f"{info['strength']:.2f}", refresh=False)
        bar.refresh()

    def close() -> None:
        if state.get("bar") is not None:
            state.pop("bar").close()

    return on_step, close


def protect_options(args: argparse.Namespace) -> dict:
    """The ``protect`` options a command line sets, the same whether run here or by an engine (--server)."""
    return dict(
        method=args.method,
        intensity=args.intensity,
        quality=args.quality,
        models=args.model or None,
        concept=args.concept,
        anchor=args.anchor,
        style=args.style,
        pattern=args.pattern,
        pipeline=args.pipeline,
        seed=args.seed,
        dtype=args.precision,
        steps=args.steps,
        optimizer=args.optimizer,
        tile=args.tile,
    )


def cmd_protect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import protect
    from .load import load_image
    from .presets import quality as quality_preset
    from .save import output_path_for

    inputs = expand_inputs(args.inputs, args.recursive)
    if not inputs:
        raise BadParameterError("no input images (give files, folders or globs)")
    if args.output and len(inputs) > 1:
        raise BadParameterError("-o/--output takes one input; use --out-dir for several")
    suffix = "." + args.format.lower().replace("jpeg", "jpg")
    if suffix not in (".png", ".jpg", ".webp", ".tif"):
        raise BadParameterError(f"unknown output format {args.format!r}; use png, jpg, webp or tif")
    if args.output:
        suffix = Path(args.output).suffix.lower() or suffix
    if suffix in (".jpg", ".jpeg", ".webp") and quality_preset(args.quality).eot_samples == 0:
        kind = "WebP" if suffix == ".webp" else "JPEG"
        print(
            f"fixative: warning: {kind} compression was not part of the '{args.quality}' "
            "optimisation; use --quality default or slow, or PNG, for protection that survives it",
            file=sys.stderr,
        )
    if args.output:
        planned = [Path(args.output)]
    else:
        planned = [output_path_for(p, args.out_dir, suffix) for p in inputs]
    resolved_inputs = {p.resolve() for p in inputs if p.exists()}
    for out in planned:
        if out.resolve() in resolved_inputs:
            raise FixativeError(f"{out}: refusing to overwrite an input image; choose another output name")
        if out.exists() and not args.overwrite:
            raise FixativeError(f"{out}: already exists (use --overwrite to replace it)")
    if getattr(args, "server", None):
        from .client import protect_on_server

        return protect_on_server(args, inputs, planned)
    show = not args.quiet and sys.stderr.isatty() or args.progress
    on_step, close_bar = _progress_bars(show)
    reports, failures = [], 0
    options = dict(
        protect_options(args),
        target=args.target,
        device=args.device,
        allow_download=args.allow_download,
        progress=on_step,
    )
    images_bar = tqdm(
        list(zip(inputs, planned, strict=True)),
        desc="images",
        unit="img",
        disable=not show or len(inputs) < 2,
        file=sys.stderr,
    )
    for source, out in images_bar:
        try:
            artwork = load_image(source)
            result = protect(artwork, **options)
            written = result.save(out, overwrite=args.overwrite)
            close_bar()
            report = dict(result.report, output=str(written))
            if args.verify:
                from .check import check

                verdict = check(
                    written, original=source, models=args.model or None, device=args.device, fast=True
                )
                report["verify"] = verdict
                print(f"  verify: {verdict['verdict']}", file=sys.stderr)
            reports.append(report)
            p = report["perceptual"]
            if not args.quiet:
                print(
                    f"{source} -> {written}  strength {report['strength']:.2f}  "
                    f"PSNR {p['psnr_db']:.1f} dB  L∞ {p['linf_255']:.0f}/255  {report['seconds']:.1f}s"
                )
            for note in report.get("notes", []):
                if not args.quiet:
                    print(f"  note: {note}", file=sys.stderr)
        except FixativeError as exc:
            close_bar()
            failures += 1
            _error(str(exc))
            reports.append({"source": str(source), "error": str(exc)})
            if isinstance(exc, BadParameterError) or "model" in type(exc).__name__.lower():
                break  # the same mistake would repeat for every image
    if args.json:
        data = reports[0] if len(reports) == 1 else reports
        Path(args.json).write_text(json.dumps(data, indent=2))
    return EXIT_ERROR if failures else 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import find_models, search_path

    entries = find_models(include_decoders=args.all)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    if not entries:
        from .models import HOW_TO_GET_A_MODEL

        print(HOW_TO_GET_A_MODEL)
        print("searched: " + ", ".join(str(p) for p in search_path()))
        return 1
    width = max(len(e.family) for e in entries)
    for e in entries:
        extra = "  (+decoder)" if e.decoder and e.kind != "tiny-decoder" else ""
        print(f"{e.family:<{width}}  {e.latent_channels:>3} ch  {e.kind:<12} {e.source}{extra}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import as_table

    print(json.dumps(as_table(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fixative", description="Protect artworks from diffusion models.")
    parser.add_argument("--version", action="version", version=f"fixative {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("protect", help="write protected copies of images")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("-o", "--output", help="output file (one input only)")
    p.add_argument("--out-dir", help="folder for outputs (default: beside each input)")
    p.add_argument("--format", default="png", help="png (default), jpg, webp or tif")
    p.add_argument("--method", default="style", choices=["style", "concept", "edit"])
    p.add_argument("--intensity", default="default", help="low, default or high (the perceptual budget)")
    p.add_argument("--quality", default="default", help="fast, default or slow (steps and robustness)")
    p.add_argument(
        "--model", action="append", help="encoder file, folder, name or hub id; repeat for an ensemble"
    )
    p.add_argument("--target", help="style image (style), anchor image (concept) or target image (edit)")
    p.add_argument("--concept", help="concept poison: the caption the image keeps (e.g. 'dog')")
    p.add_argument(
        "--anchor", help="concept poison: the other concept, for a text2img anchor with --pipeline"
    )
    p.add_argument("--style", help="style cloak: built-in style (charcoal, pop, mosaic) or an img2img prompt")
    p.add_argument("--pattern", help="edit shield target: grey or pattern (default)")
    p.add_argument("--pipeline", help="local diffusers pipeline folder for img2img/text2img targets")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--optimizer", default="pgd", choices=["pgd", "adam"])
    p.add_argument(
        "--tile", type=int, help="tile size in pixels (memory is bounded by it; default per model)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report(s) to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--allow-download", action="store_true", help="allow fetching a hub model once")
    p.add_argument(
        "--verify", action="store_true", help="run a quick check after protecting and print the verdict"
    )
    p.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--server", metavar="URL", help="run on a `fixative serve` engine (its URL, or 'auto')")
    p.set_defaults(func=cmd_protect)

    m = sub.add_parser("models", help="list the encoders Fixative can find")
    m.add_argument("--json", action="store_true")
    m.add_argument("--all", action="store_true", help="include decoder-only files")
    m.set_defaults(func=cmd_models)

    pr = sub.add_parser("presets", help="print the exact numbers behind --intensity and --quality")
    pr.set_defaults(func=cmd_presets)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list:
    """Sub-commands that live with their own feature (check, serve, install), imported lazily."""
    registers = []
    for module_name in ("fixative.check.cli", "fixative.server.cli", "fixative.hosts.cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        registers.append(module.register)
    return registers


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FixativeError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted; no partial output was written")
        return 130


if __name__ == "__main__":
    sys.exit(main())
