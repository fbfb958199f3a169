"""``fixative protect --server URL``: the same command, run by an engine instead of this process."""

from __future__ import annotations

import argparse
import sys

from ...errors import FixativeError
from ...fixative_client import EngineError, EngineNotRunning, summarise
from ...options import JobOptions
from .. import plan
from ..client import Client


def run_on_server(
    args: argparse.Namespace, options: JobOptions, planned: list[plan.Planned]
) -> tuple[list, int]:
    client = Client(None if args.server == "auto" else args.server)
    sent = options.model_dump(exclude_defaults=True, exclude={"overwrite", "skip_existing", "allow_download"})
    reports, failed = [], 0
    for item in planned:
        if item.skip:
            reports.append({"source": str(item.source), "output": str(item.output), "skipped": item.skip})
            continue
        try:
            result = client.protect(
                item.source, target=args.target, **{**sent, "format": plan.format_of(item.output)}
            )
            written = result.save(item.output, overwrite=options.overwrite or options.skip_existing)
        except EngineNotRunning:
            raise
        except (FixativeError, EngineError) as exc:
            failed += 1
            print(f"fixative: error: {exc}", file=sys.stderr)
            reports.append({"source": str(item.source), "error": str(exc)})
            continue
        report = dict(result.report, output=str(written))
        if result.check is not None:
            report["verify"] = result.check
        reports.append(report)
        if not args.quiet:
            print(f"{item.source} -> {written}  {summarise(report)} (on {client.url})")
    return reports, failed
