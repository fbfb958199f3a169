"""How fast the commands that need no model answer, and that they never import torch (issue 19).

    python -m bench.startup            # each command 5 times in a fresh interpreter; a table, rc 1 on failure

For ``--help``, ``--version``, ``presets``, a bad parameter and a 0-byte input this runs
``python -X importtime -m fixative ...`` in a fresh process, reads which modules were imported, and reports
the median wall time. It fails (exit 1) when any of them imports torch. Timing is a benchmark, not a test:
it depends on the machine and its load (the goal is under 1 s here).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "diffusers", "kornia", "cv2")


def commands(scratch: Path) -> dict[str, list[str]]:
    empty = scratch / "empty.png"
    empty.write_bytes(b"")
    return {
        "--help": ["--help"],
        "--version": ["--version"],
        "protect --help": ["protect", "--help"],
        "presets": ["presets"],
        "bad parameter": ["protect", str(empty), "--intensity", "loud"],
        "0-byte input": ["protect", str(empty)],
    }


def imported_modules(stderr: str) -> set[str]:
    """Top-level module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    return names


def measure(argv: list[str], repeats: int) -> tuple[float, set[str], int]:
    times, heavy, code = [], set(), 0
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "fixative", *argv], capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        heavy |= imported_modules(proc.stderr) & set(HEAVY)
        code = proc.returncode
    return statistics.median(times), heavy, code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        print("| command | exit | median wall s | heavy modules imported |")
        print("|---|---|---|---|")
        for name, command in commands(Path(scratch)).items():
            seconds, heavy, code = measure(command, args.repeats)
            failed |= bool(heavy)
            print(f"| `fixative {name}` | {code} | {seconds:.2f} | {', '.join(sorted(heavy)) or 'none'} |")
    if failed:
        print("FAIL: a command that needs no model imported a heavy module", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
