"""``fixative check``: how protected a file is, as a table, JSON or a self-contained HTML report."""

from __future__ import annotations

import argparse
import sys

from ...errors import BadParameterError
from ...options import PRECISIONS, ProtectOptions

EXIT_BELOW_MIN = 1  # the check ran, but an image is below --min-strength (errors exit 2, as elsewhere)


def cmd_check(args: argparse.Namespace) -> int:
    from ...api import run_check
    from ...checks.html_report import write_html
    from ...checks.report import table, write_json

    if args.min_strength is not None and not -1 <= args.min_strength <= 1:
        raise BadParameterError(f"--min-strength must be between -1 and 1, got {args.min_strength}")
    if args.impress_steps < 0:
        raise BadParameterError("--impress-steps must be >= 0")
    bar = PartsBar((not args.quiet and sys.stderr.isatty()) or args.progress)
    try:
        result, visuals = run_check(
            args.protected,
            original=args.original,
            models=args.model or None,
            device=args.device,
            fast=args.fast,
            target_image=args.target,
            pipeline=args.pipeline,
            impress_steps=args.impress_steps,
            progress=bar.on_part,
            precision=args.precision,
            metadata_from=args.metadata_from,
        )
    finally:
        bar.close()
    if args.json:
        write_json(result, args.json)
    if args.html:
        write_html(result, visuals, args.html)
    if not args.quiet:
        print(table(result))
    if args.min_strength is not None:
        strength = result.strength
        if strength is None or strength < args.min_strength:
            shown = "not measured" if strength is None else f"{strength:.2f}"
            print(
                f"fixative: {args.protected}: strength {shown} is below --min-strength "
                f"{args.min_strength:.2f}",
                file=sys.stderr,
            )
            return EXIT_BELOW_MIN
    return 0


class PartsBar:
    """A tqdm bar on stderr naming the part of the check that runs (IMPRESS takes most of a full check)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def on_part(self, done: int, total: int, info: dict) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="check", unit="part", leave=False, file=sys.stderr)
        self.bar.n = done
        self.bar.set_postfix_str(str(info.get("doing", "")), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def register(subparsers) -> None:
    c = subparsers.add_parser(
        "check", help="measure how protected an image is and whether the protection survives purification"
    )
    c.add_argument("protected", help="the protected image")
    c.add_argument(
        "--original", help="the original it was made from (exact figures; without it they are estimates)"
    )
    c.add_argument(
        "--model",
        action="append",
        help="encoder to measure with (default: those recorded in the file); repeat for several",
    )
    c.add_argument(
        "--metadata-from",
        metavar="FILE",
        help="the protected file as Fixative wrote it, whose metadata to use: for checking a copy a site "
        "served (metadata stripped, maybe resized) against --original",
    )
    c.add_argument("--target", help="the style/anchor/target image given to protect, when one was")
    c.add_argument("--pipeline", help="the local diffusers pipeline folder, for img2img/text2img targets")
    c.add_argument("--json", help="write the full result to this JSON file")
    c.add_argument("--html", help="write a self-contained HTML report to this file")
    c.add_argument(
        "--min-strength",
        type=float,
        help="exit with status 1 when the strength is below this (for pipelines)",
    )
    c.add_argument("--fast", action="store_true", help="quick subset (what protect --verify runs)")
    c.add_argument(
        "--impress-steps", type=int, default=50, help="steps of the IMPRESS purification (default 50)"
    )
    c.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    precision = ProtectOptions.model_fields["dtype"]  # as protect's, so --verify and check agree
    c.add_argument(
        "--precision",
        default=precision.default,
        choices=PRECISIONS,
        help=f"{precision.description} (default: {precision.default})",
    )
    c.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    c.set_defaults(func=cmd_check)
