"""``fixative protect``: protected copies of files, folders and globs, here or on a running engine.

The flags come from the options schema. The whole batch is planned (and every output checked) before
any work; inputs are read without torch first, so a bad file or value is reported at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...errors import BadParameterError, FixativeError, ModelNotFoundError
from ...fixative_client import summarise
from ...load.decode import decode_file
from ...options import JobOptions
from ...presets import quality as quality_preset
from .. import plan
from .arguments import add_options, values_from

DESCRIPTION = (
    "Write protected copies of images. At the default intensity the change stays under one just-noticeable "
    "difference of a standard visual model and under 2/255 RMS in flat areas; style, concept and edit "
    "protections move what the model sees (its decoder's picture) part of the way toward their target and "
    "degrade, not prevent, what it learns or edits. Every report measures how much, beside matched noise "
    "(bench/efficacy.py, bench/visibility.py)."
)

EXIT_ERROR = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protect", help="write protected copies of images", description=DESCRIPTION)
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("-o", "--output", help="output file (one input only; its suffix sets the format)")
    p.add_argument("--out-dir", help="folder for outputs (default: beside each input)")
    p.add_argument("--target", help="style image (style), anchor image (concept) or target image (edit)")
    p.add_argument("--json", help="write the report(s) to this JSON file")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--server", metavar="URL", help="run on a `fixative serve` engine (its URL, or 'auto')")
    add_options(p, JobOptions)
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> JobOptions:
    values = values_from(args)
    if args.output and "format" not in values and Path(args.output).suffix.lower() in plan.OUTPUT_SUFFIXES:
        values["format"] = plan.format_of(Path(args.output))  # (any other suffix is refused by plan())
    return JobOptions.parse(values)


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    planned = plan.plan(plan.expand_inputs(args.inputs, args.recursive), options, args.output, args.out_dir)
    if options.format in ("jpg", "webp") and quality_preset(options.quality).eot_samples == 0:
        kind = "WebP" if options.format == "webp" else "JPEG"
        print(
            f"fixative: warning: {kind} compression was not part of the '{options.quality}' "
            "optimisation; use --quality default or slow, or PNG, for protection that survives it",
            file=sys.stderr,
        )
    if args.server:
        from .server_runs import run_on_server

        runner = run_on_server
    else:
        runner = run_here
    reports, failed = runner(args, options, planned)
    skipped = sum(1 for item in planned if item.skip)
    protected = sum(1 for r in reports if "error" not in r and "skipped" not in r)
    failed = len(planned) - skipped - protected  # inputs never reached (a bad model stops a batch) count too
    if len(planned) > 1 or skipped:
        print(plan.summary(len(planned), skipped, protected, failed), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    return EXIT_ERROR if failed else 0


def run_here(args: argparse.Namespace, options: JobOptions, planned: list[plan.Planned]) -> tuple[list, int]:
    """Protect each planned input in this process; one failure does not stop the others."""
    show = (not args.quiet and sys.stderr.isatty()) or args.progress
    reports, failed = [], 0
    with Progress(show, total=sum(not item.skip for item in planned)) as progress:
        for item in planned:
            if item.skip:
                reports.append({"source": str(item.source), "output": str(item.output), "skipped": item.skip})
                continue
            try:
                decoded = decode_file(item.source)  # no torch yet: a bad file is reported at once
                report = protect_one(decoded, item, options, args, progress.on_step)
            except FixativeError as exc:
                failed += 1
                print(f"fixative: error: {exc}", file=sys.stderr)
                reports.append({"source": str(item.source), "error": str(exc)})
                if isinstance(exc, (BadParameterError, ModelNotFoundError)):
                    break  # the same mistake would repeat for every image
                continue
            finally:
                progress.next_image()
            reports.append(report)
            say(report, item, args)
    return reports, failed


def protect_one(decoded, item: plan.Planned, options: JobOptions, args, on_step) -> dict:
    from ...api import protect, ready_for
    from ...load.image import from_decoded

    artwork = from_decoded(decoded)
    artwork.source = str(item.source)
    artwork = ready_for(artwork, Path(item.output).suffix)
    result = protect(artwork, options=options.engine_options(), target=args.target, progress=on_step)
    written = result.save(item.output, overwrite=options.overwrite or options.skip_existing)
    report = dict(result.report.to_dict(), output=str(written))
    if options.check:
        from ...api import check

        verdict = check(
            written, original=item.source, models=options.models, device=options.device, fast=True,
            precision=options.dtype,
        )  # fmt: skip
        report["verify"] = verdict.to_dict()
        print(f"  verify: {verdict.verdict}", file=sys.stderr)
    return report


def say(report: dict, item: plan.Planned, args) -> None:
    if args.quiet:
        return
    print(f"{item.source} -> {report['output']}  {summarise(report)}")
    for note in report.get("notes", []):
        print(f"  note: {note}", file=sys.stderr)


class Progress:
    """tqdm bars on stderr: images (when several) and the steps of the current one."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self.images = self.steps = None

    def __enter__(self) -> Progress:
        if self.enabled and self.total > 1:
            from tqdm import tqdm

            self.images = tqdm(total=self.total, desc="images", unit="img", file=sys.stderr)
        return self

    def on_step(self, done: int, total: int, info: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.steps is None or self.steps.total != total:
            self.close_steps()
            self.steps = tqdm(total=total, desc="  steps", unit="step", leave=False, file=sys.stderr)
        self.steps.n = done
        if info.get("phase") == "measure":  # after the last step: what the report measures now
            self.steps.set_description(f"  measuring {info.get('doing', '')}", refresh=False)
        elif info.get("strength") is not None:
            self.steps.set_postfix(strength=f"{info['strength']:.2f}", refresh=False)
        self.steps.refresh()

    def next_image(self) -> None:
        self.close_steps()
        if self.images is not None:
            self.images.update(1)

    def close_steps(self) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None

    def __exit__(self, *exc) -> None:
        self.close_steps()
        if self.images is not None:
            self.images.close()
