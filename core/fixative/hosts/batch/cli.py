"""``fixative batch SRC... --out-dir DST``: protect a catalogue on Ray (a local one, or a cluster)."""

from __future__ import annotations

import argparse
import sys
import time

from ...options import JobOptions
from ..cli.arguments import add_options, values_from

DESCRIPTION = (
    "Protect folders, globs or a CSV/Parquet manifest (a 'path' column, optional 'output', 'target' and "
    "option columns per row) as a Ray Data pipeline: an actor pool whose actors load the encoders once, "
    "one per GPU where there are GPUs. Re-running skips inputs whose protected copy exists (same input, same "
    "options); a bad image is a failed row in the manifest. Needs: pip install 'fixative[ray]'."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="protect a whole catalogue on Ray (local or a cluster)", description=DESCRIPTION
    )
    p.add_argument(
        "inputs", nargs="+", help="folders, globs, files, or a .csv/.parquet manifest (paths or URIs)"
    )
    p.add_argument("--out-dir", required=True, help="where the protected copies go (a path or s3://, gs://…)")
    p.add_argument("--target", help="style image, anchor image or edit target for every row without one")
    p.add_argument(
        "--manifest", help="the result manifest (.jsonl or .parquet; default OUT_DIR/fixative-manifest.jsonl)"
    )
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders (their layout is kept)")
    p.add_argument(
        "--ray-address", help="join a running cluster: auto, or ray://HOST:10001 (default: a local Ray)"
    )
    p.add_argument(
        "--actors", type=int, help="actors in the pool (default: one per GPU, or per --num-cpus CPUs)"
    )
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor (default 1)")
    p.add_argument(
        "--num-gpus", type=float, default=0.0, help="GPUs per actor (e.g. 1; default 0: CPU actors)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary")
    add_options(p, JobOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...errors import BadParameterError
    from .rows import plan_rows
    from .runner import require_ray, run_batch, say, summary_line, write_manifest
    from .storage import join

    if args.actors is not None and args.actors < 1 or args.num_cpus <= 0 or args.num_gpus < 0:
        raise BadParameterError("--actors and --num-cpus must be positive, --num-gpus at least 0")
    options = JobOptions.parse(values_from(args))
    rows = plan_rows(args.inputs, args.out_dir, options, args.recursive, args.target)  # before Ray starts
    if not args.ray_address:  # a cluster's workers may hold models this machine lacks; a local one cannot
        from ...models import entries_for
        from ...plugins import hooks

        entries_for(options.models, hooks(), options.device or ("cuda" if args.num_gpus else "cpu"))
    require_ray()
    started = time.monotonic()
    from tqdm import tqdm

    bar = tqdm(total=len(rows), desc="images", unit="img", file=sys.stderr, disable=args.quiet or None)

    def on_result(entry: dict) -> None:
        bar.update(1)
        if not args.quiet or entry["status"] == "failed":
            bar.clear()
            say(entry)

    entries = run_batch(
        rows,
        models=options.models,
        device=options.device,
        actors=args.actors,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        ray_address=args.ray_address,
        on_result=on_result,
    )
    bar.close()
    manifest = write_manifest(entries, args.manifest or join(args.out_dir, "fixative-manifest.jsonl"))
    print(summary_line(entries, time.monotonic() - started) + f"; manifest: {manifest}", file=sys.stderr)
    return 2 if any(e["status"] == "failed" for e in entries) else 0
