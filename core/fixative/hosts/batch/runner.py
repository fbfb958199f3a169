"""The batch on Ray Data: rows → ``map_batches`` on an actor pool (each actor loads the encoders once) →
protected images written where the rows say, and a manifest with one row per input.

Exactly once: an output is written whole (temporary + rename locally, one object on a store) and a worker
that reads an input first asks whether its output is already a finished copy (``rows.already_done``), so
a task Ray retries after a worker died skips what the dead one finished and redoes what it did not.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ...errors import FixativeError
from .. import plan
from . import storage
from .rows import BatchRow, already_done, row_options

FIGURES = ("strength", "noise_strength", "decoded_share", "linf_255", "psnr_db", "ssim", "flat_rms_255")
FIGURES += ("jnd_exceed_share", "seconds")
TEXTS = ("source", "output", "status", "error", "robustness")
HOW_TO_GET_RAY = "fixative batch runs on Ray, which is not installed: pip install 'fixative[ray]'"


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FixativeError(HOW_TO_GET_RAY) from None
    return ray


class ProtectWorker:
    """One Ray actor: the encoders are loaded once here, then every call protects its rows."""

    def __init__(self, models: list[str] | None, device: str, threads: int) -> None:
        import torch

        from ...models import load_encoders
        from ...options import ProtectOptions
        from ...plugins import hooks
        from ..quiet import quiet_libraries

        quiet_libraries()
        torch.set_num_threads(max(1, threads))
        self.models, self.device = models, device
        self.unusable = ""  # why this worker cannot protect: every row it gets fails with that one line
        try:
            # warm, in the precision rows get by default: kept in the encoder cache
            dtype = ProtectOptions.model_fields["dtype"].default
            load_encoders(models or None, hooks(), device=device, dtype=dtype)
        except FixativeError as exc:  # raised here, Ray would retry the actor and print its traceback
            self.unusable = str(exc)

    def __call__(self, batch: dict) -> dict:
        count = len(batch["source"])
        results = [self.one({key: batch[key][i] for key in batch}) for i in range(count)]
        return {key: [r[key] for r in results] for key in (*TEXTS, *FIGURES, "index", "worker")}

    def one(self, row: dict) -> dict:
        started = time.monotonic()
        result = {key: "" for key in TEXTS} | {key: math.nan for key in FIGURES}
        result.update(source=str(row["source"]), output=str(row["output"]), index=int(row["index"]))
        result["worker"] = os.getpid()
        try:
            if self.unusable:
                raise FixativeError(self.unusable)
            result.update(self._protect(row))
        except FixativeError as exc:
            result.update(status="failed", error=str(exc))
        except Exception as exc:  # a row's failure must never stop the job
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            result.update(status="failed", error=f"{type(exc).__name__}: {first[:200]}")
        result["seconds"] = round(time.monotonic() - started, 3)
        return result

    def _protect(self, row: dict) -> dict:
        from ...api import protect, ready_for
        from ...load.image import load_bytes
        from ...save.image import FORMATS

        if row["error"]:
            return {"status": "failed", "error": str(row["error"])}
        source, output = str(row["source"]), str(row["output"])
        try:
            data = storage.read_bytes(source)
        except OSError as exc:
            raise FixativeError(f"{source}: cannot read it ({exc.strerror or exc})") from None
        options = row_options(row)
        if not options.overwrite and already_done(output, data, options):
            return {"status": "skipped", "error": ""}
        artwork = load_bytes(data, Path(source).name)
        artwork.source = source
        artwork = ready_for(artwork, Path(output).suffix)
        target = load_bytes(storage.read_bytes(str(row["target"])), "target") if row["target"] else None
        engine = options.engine_options().model_copy(
            update={"models": options.models or self.models, "device": self.device}
        )
        result = protect(artwork, options=engine, target=target)
        fmt = FORMATS[Path(output).suffix.lower()]
        storage.write_bytes(output, result.encoded(fmt, options.jpeg_quality))
        report = result.report.to_dict()  # of the file as written
        first = (report.get("encoders") or [{}])[0]
        seen = report.get("perceptual") or {}
        figures = {
            "strength": report.get("strength"),
            "noise_strength": first.get("noise_strength"),
            "decoded_share": first.get("decoded_share"),
            **{
                key: seen.get(key)
                for key in ("linf_255", "psnr_db", "ssim", "flat_rms_255", "jnd_exceed_share")
            },
        }
        out = {"status": "protected", "error": ""}
        out.update({k: (math.nan if v is None else float(v)) for k, v in figures.items()})
        if options.check and not storage.is_uri(output) and not storage.is_uri(source):
            from ...api import check

            verdict = check(
                output, original=source, models=engine.models, device=self.device, fast=True,
                precision=engine.dtype,
            )  # fmt: skip
            out["robustness"] = json.dumps(
                {step.purification: step.share_kept for step in verdict.robustness if not step.skipped}
            )
        return out


def quiet_ray() -> None:
    """Ray's own INFO lines and C++ core warnings stay in its session logs (``/tmp/ray``), off stderr,
    unless ``fixative -v``."""
    import logging

    if os.environ.get("FIXATIVE_VERBOSE"):
        return
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)


def default_actors(num_cpus: float, num_gpus: float) -> int:
    """One actor per GPU where there are GPUs, else as many CPU actors as the cluster's CPUs allow."""
    import ray

    resources = ray.cluster_resources()
    if num_gpus:
        return max(1, int(resources.get("GPU", 0) // num_gpus))
    return max(1, int(resources.get("CPU", 1) // max(num_cpus, 1e-9)))


def run_batch(
    rows: list[BatchRow],
    *,
    models: list[str] | None = None,
    device: str | None = None,
    actors: int | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    ray_address: str | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Every row's manifest entry, in input order."""
    quiet_ray()
    ray = require_ray()
    if not ray.is_initialized():
        # A local Ray listens on loopback only; a cluster's address is the user's to give.
        local = {} if ray_address else {"_node_ip_address": "127.0.0.1"}
        ray.init(
            address=ray_address,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
            **local,
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours (one line per image) instead of Ray's operator bars
    device = device or ("cuda" if num_gpus else "cpu")
    pool = actors or default_actors(num_cpus, num_gpus)
    records = [dict(row.as_dict(), index=index) for index, row in enumerate(rows)]
    done: list[dict | None] = [None] * len(records)
    dataset = ray.data.from_items(records, override_num_blocks=max(1, len(records)))
    protected = dataset.map_batches(
        ProtectWorker,
        fn_constructor_kwargs={"models": models, "device": device, "threads": max(1, int(num_cpus))},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )
    for result in protected.iter_rows():
        entry = _plain(result)
        done[entry["index"]] = entry
        if on_result is not None:
            on_result(entry)
    return [entry for entry in done if entry is not None]


def _plain(result: dict) -> dict:
    """A manifest row: numbers as floats (NaN → None), strings as text, Ray's numpy scalars gone."""
    entry = {}
    for key, value in result.items():
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, float) and math.isnan(value):
            value = None
        entry[key] = value if value != "" else None
    return entry


def write_manifest(entries: list[dict], location: str) -> str:
    """JSONL (one object per line), or Parquet when ``location`` ends in .parquet."""
    columns = ["source", "output", "status", "error", *FIGURES, "robustness", "worker"]
    rows = [{key: entry.get(key) for key in columns} for entry in entries]
    if location.lower().endswith(".parquet"):
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        storage.write_bytes(location, buffer.getvalue())
    else:
        text = "".join(json.dumps(row) + "\n" for row in rows)
        storage.write_bytes(location, text.encode("utf-8"))
    return location


def summary_line(entries: list[dict], seconds: float) -> str:
    counts = {
        state: sum(1 for e in entries if e["status"] == state) for state in ("skipped", "protected", "failed")
    }
    line = plan.summary(len(entries), counts["skipped"], counts["protected"], counts["failed"])
    rate = counts["protected"] / (seconds / 60) if seconds > 0 else 0.0
    return f"{line} in {seconds:.1f} s ({rate:.1f} images per minute)"


def say(entry: dict) -> None:
    if entry["status"] == "failed":
        print(f"fixative: error: {entry['error']}", file=sys.stderr)
    elif entry["status"] == "protected":
        figures = f"strength {entry['strength']:.2f}  {entry['seconds']:.1f}s"
        print(f"{entry['source']} -> {entry['output']}  {figures}")
