"""The quick device check's kit, for a GPU machine that has PyTorch and no network (docs/speed.md).

    python -m bench.device_kit                 # writes .devkit/ (ignored by git), prints how to run it

A lent GPU machine has PyTorch, Triton, NumPy, Pillow, safetensors, huggingface_hub and pluggy, but not
the rest of what ``python -m bench.run --device cuda --quick`` imports, nor the taef2 weights and the
artwork (``../shared`` stays behind), and it cannot fetch them. The kit holds them: wheels of those
packages at this environment's versions (for ``--python-version``, the machine's), taef2's encoder and
decoder, one artwork, and ``run.sh``, which installs the wheels beside the machine's own packages and runs
the check with ``core/`` on the path. Its whole size stays far under the 64 MiB a working tree may carry.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# What the quick check imports beyond a PyTorch image's own packages (their pinned dependencies too).
PACKAGES = (
    "diffusers",
    "importlib-metadata",
    "kornia",
    "kornia-rs",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MODELS = ("taef2_encoder.pth", "taef2_decoder.pth", "LICENSE-taesd.txt")
ARTWORK = "hokusai_great_wave.jpg"

RUN_SH = """#!/bin/sh
# The quick device check (made by `python -m bench.device_kit`). Run from the repository root:
#   sh .devkit/run.sh                  # on the GPU machine: python -m bench.run --device cuda --quick
#   DEVICE=cpu sh .devkit/run.sh --smoke
set -e
kit=$(cd "$(dirname "$0")" && pwd)
site=${KIT_SITE:-/tmp/fixative-site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \\
    "$kit"/wheels/*.whl
export PYTHONPATH="$PWD/core:$PWD:$site" PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec python3 -m bench.run --quick --device "${DEVICE:-cuda}" --models "$kit/models" \\
    --images "$kit/images/ARTWORK" --out "${OUT:-bench/results}" "$@"
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.device_kit", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / ".devkit"), help="the kit's folder (default .devkit/)")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (wheels for it)")
    p.add_argument("--shared", default=str(SHARED), help="where models/taesd and images/ are")
    p.add_argument("--no-wheels", action="store_true", help="models, artwork and run.sh only")
    return p.parse_args(argv)


def pinned() -> list[str]:
    """Each package at the version installed here, the one the test suite runs with."""
    return [f"{name}=={version(name)}" for name in PACKAGES]


def download(wheels: Path, python_version: str) -> None:
    command = [
        *[sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"],
        *["--python-version", python_version, "--implementation", "cp", "--dest", str(wheels)],
        *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
        *pinned(),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip download failed: {done.stderr.strip().splitlines()[-1:]}")


def build(args: argparse.Namespace) -> Path:
    kit, shared = Path(args.out), Path(args.shared)
    for name in MODELS:
        if not (shared / "models" / "taesd" / name).is_file():
            raise SystemExit(f"{shared / 'models' / 'taesd' / name}: not found (--shared DIR)")
    if not (shared / "images" / ARTWORK).is_file():
        raise SystemExit(f"{shared / 'images' / ARTWORK}: not found (--shared DIR)")
    shutil.rmtree(kit, ignore_errors=True)
    (kit / "models" / "taesd").mkdir(parents=True)
    (kit / "images").mkdir()
    (kit / "wheels").mkdir()
    for name in MODELS:
        shutil.copyfile(shared / "models" / "taesd" / name, kit / "models" / "taesd" / name)
    shutil.copyfile(shared / "images" / ARTWORK, kit / "images" / ARTWORK)
    (kit / "run.sh").write_text(RUN_SH.replace("ARTWORK", ARTWORK))
    if not args.no_wheels:
        download(kit / "wheels", args.python_version)
    return kit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kit = build(args)
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file()) / 2**20
    rel = kit.relative_to(ROOT) if kit.is_relative_to(ROOT) else kit
    print(f"{rel}: {size:.1f} MiB ({len(list((kit / 'wheels').glob('*.whl')))} wheels)")
    print(f'on the GPU machine: command "sh {rel}/run.sh", carry ["{rel}"] (results under $OUT)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
