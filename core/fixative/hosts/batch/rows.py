"""The batch planned before Ray starts: one row per input, with its output, options and what to skip.

Inputs are folders, globs and files (local or URIs), or a CSV/Parquet manifest with a ``path`` column and
optional ``output``, ``target`` and option columns (``method``, ``intensity``, ``quality``, ``concept``,
``style``, ``pattern``, ``steps``, ``seed``, ``format``…) that override the command line's per row. A bad
row (unknown option value, two inputs for one output) is a failed row, never the end of the job. The
re-run rule is ``--skip-existing``'s (``hosts.plan.matches``), applied by the worker that reads the input
anyway (``already_done``): an output that is a whole Fixative output of the same input bytes with the
same options is skipped; anything else is redone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from ...errors import BadParameterError, FixativeError
from ...options import FORMAT_SUFFIXES, JobOptions
from .. import plan
from . import storage

MANIFEST_SUFFIXES = (".csv", ".parquet")
ROW_COLUMNS = ("path", "output", "target")


@dataclass
class BatchRow:
    """Plain strings only: rows travel through Ray as Arrow records."""

    source: str
    output: str = ""
    options_json: str = "{}"
    target: str = ""
    error: str = ""  # a row that cannot run (bad option value, shared output): reported, never run

    def as_dict(self) -> dict:
        return asdict(self)


def plan_rows(
    items: list[str], out_dir: str, options: JobOptions, recursive: bool = False, target: str | None = None
) -> list[BatchRow]:
    """Every row of the batch, outputs under ``out_dir``, each checked against what is already there."""
    if not out_dir:
        raise BadParameterError("--out-dir is required: a batch never writes beside its inputs")
    rows: list[BatchRow] = []
    for item in items:
        if item.lower().endswith(MANIFEST_SUFFIXES):
            rows += manifest_rows(item, out_dir, options, target)
        else:
            rows += [
                _row(source, rel, out_dir, options.model_dump(exclude_defaults=True), target)
                for source, rel in _expand(item, recursive)
            ]
    if not rows:
        raise BadParameterError("no input images (give folders, globs, files or a CSV/Parquet manifest)")
    _refuse_shared_outputs(rows)
    return rows


def manifest_rows(location: str, out_dir: str, options: JobOptions, target: str | None) -> list[BatchRow]:
    table = _read_table(location)
    if "path" not in table.column_names:
        raise BadParameterError(f"{location}: a manifest needs a 'path' column (found {table.column_names})")
    base = options.model_dump(exclude_defaults=True)
    rows = []
    for record in table.to_pylist():
        overrides = {k: v for k, v in record.items() if k not in ROW_COLUMNS and v not in (None, "")}
        source = str(record["path"])
        row = _row(
            source,
            PurePosixPath(Path(source).name),
            out_dir,
            {**base, **overrides},
            record.get("target") or target,
        )
        if record.get("output"):
            row.output = str(record["output"])
        rows.append(row)
    return rows


def _read_table(location: str):
    import pyarrow.csv
    import pyarrow.parquet

    try:
        if location.lower().endswith(".parquet"):
            return pyarrow.parquet.read_table(location)
        return pyarrow.csv.read_csv(location)
    except Exception as exc:  # missing, unreadable or malformed: one line
        raise FixativeError(
            f"{location}: cannot read the manifest ({str(exc).splitlines()[0][:160]})"
        ) from None


def _expand(item: str, recursive: bool) -> list[tuple[str, PurePosixPath]]:
    """(source, path relative to its folder) for each image of a folder, glob or file."""
    if storage.is_uri(item):
        listed = storage.list_files(item, recursive)
        if listed is None:
            return [(item, PurePosixPath(item.rsplit("/", 1)[-1]))]
        root = item.rstrip("/") + "/"
        return [
            (uri, PurePosixPath(uri[len(root) :]))
            for uri in listed
            if Path(uri).suffix.lower() in plan.IMAGE_SUFFIXES and ".protected." not in uri
        ]
    path = Path(item).expanduser()
    if not path.exists() and not any(ch in item for ch in "*?["):  # a typo: said before Ray starts
        raise BadParameterError(f"{item}: no such file or folder")
    found = plan.expand_inputs([item], recursive)
    if path.is_dir():
        return [(str(p), PurePosixPath(p.relative_to(path).as_posix())) for p in found]
    return [(str(p), PurePosixPath(p.name)) for p in found]


def _row(source: str, relative: PurePosixPath, out_dir: str, values: dict, target: str | None) -> BatchRow:
    row = BatchRow(source=source, target=str(target or ""))
    try:
        options = JobOptions.parse(values)
    except FixativeError as exc:
        row.error = str(exc)
        return row
    row.options_json = json.dumps(options.model_dump(exclude_defaults=True), sort_keys=True)
    name = f"{relative.stem}.protected{FORMAT_SUFFIXES[options.format]}"
    row.output = storage.join(out_dir, str(relative.parent / name) if str(relative.parent) != "." else name)
    return row


def _refuse_shared_outputs(rows: list[BatchRow]) -> None:
    """Two inputs for one output (a.png and a.jpg) would overwrite each other: the later ones fail."""
    seen: dict[str, str] = {}
    for row in rows:
        if row.error:
            continue
        if row.output in seen:
            row.error = f"{row.output}: {seen[row.output]} already writes this output; rename one of them"
        else:
            seen[row.output] = row.source


def row_options(row: BatchRow | dict) -> JobOptions:
    text = row.options_json if isinstance(row, BatchRow) else row["options_json"]
    return JobOptions.parse(json.loads(text))


def already_done(output: str, source_bytes: bytes, options: JobOptions) -> bool:
    """The ``--skip-existing`` rule for a location (local or URI)."""
    if not storage.exists(output):
        return False
    try:
        meta = plan.metadata_of(storage.read_bytes(output))
    except OSError:
        return False
    expected = options.engine_options().recorded()
    return plan.matches(meta, hashlib.sha256(source_bytes).hexdigest(), expected)
