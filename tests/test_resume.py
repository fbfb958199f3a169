"""Nothing lost after a crash (issue 19): ``--skip-existing`` finishes a folder run killed with -9 without
touching what was done, redoes outputs that are not a finished copy of the same input with the same
options, and a starting engine removes the job folders (uploaded artworks) of engines that are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from fixative.hosts.cli import main

FAST = ["--quality", "fast", "--steps", "2", "--method", "edit"]


@pytest.fixture
def folder(tmp_path, small_artwork) -> Path:
    """Four small distinct inputs."""
    src = tmp_path / "in"
    src.mkdir()
    for index in range(4):
        small_artwork.crop((index * 8, 0, index * 8 + 64, 48)).save(src / f"art{index}.png")
    return src


def _outputs(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


def test_skip_existing_skips_finished_copies_and_redoes_the_rest(capsys, tmp_path, folder, taef2_path):
    out_dir = tmp_path / "out"
    argv = ["protect", str(folder), *FAST, "--model", str(taef2_path), "--out-dir", str(out_dir)]
    assert main(argv) == 0
    first = _outputs(out_dir)
    assert len(first) == 4
    capsys.readouterr()

    (out_dir / "art1.protected.png").write_bytes(first["art1.protected.png"][:300])  # truncated
    (out_dir / "art2.protected.png").write_bytes(first["art3.protected.png"])  # another input's copy
    (out_dir / "art3.protected.png").unlink()  # never written
    assert main([*argv, "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert "4 inputs: 1 skipped, 3 protected, 0 failed" in err
    again = _outputs(out_dir)
    assert again["art0.protected.png"] == first["art0.protected.png"]  # untouched
    for name in ("art1.protected.png", "art2.protected.png", "art3.protected.png"):
        Image.open(out_dir / name).load()  # complete files again
    assert again["art2.protected.png"] != first["art3.protected.png"]

    # other options: nothing is a finished copy any more
    assert main([*argv, "--skip-existing", "--intensity", "low"]) == 0
    assert "4 inputs: 0 skipped, 4 protected, 0 failed" in capsys.readouterr().err


def test_a_run_killed_with_sigkill_is_finished_by_skip_existing(tmp_path, folder, taef2_path):
    """A real process, killed as the first output lands: the re-run keeps that output and does the rest."""
    out_dir = tmp_path / "out"
    argv = [
        sys.executable, "-m", "fixative", "protect", str(folder), "--quality", "fast", "--steps", "12",
        "--method", "edit", "--model", str(taef2_path), "--out-dir", str(out_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if out_dir.exists() and any(p.suffix == ".png" for p in out_dir.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stderr.close()
    done = {p.name: p.read_bytes() for p in out_dir.glob("*.png")}
    assert 1 <= len(done) < 4, "the run was not killed midway (made the images slower?)"

    rerun = subprocess.run([*argv, "--skip-existing"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"4 inputs: {len(done)} skipped, {4 - len(done)} protected, 0 failed" in rerun.stderr
    final = sorted(out_dir.iterdir())
    assert [p.name for p in final] == [f"art{i}.protected.png" for i in range(4)]  # no temporaries left
    for name, data in done.items():
        assert (out_dir / name).read_bytes() == data  # the finished ones were not redone


def test_a_starting_engine_removes_job_folders_of_dead_engines():
    from fixative.hosts.server.jobs import JOBS_PREFIX, JobManager

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    root = Path(tempfile.gettempdir())
    stale = root / f"{JOBS_PREFIX}{gone.pid}-test"
    (stale / "job" / "upload").mkdir(parents=True)
    (stale / "job" / "upload" / "art.png").write_bytes(b"an uploaded artwork")
    alive = Path(tempfile.mkdtemp(prefix=f"{JOBS_PREFIX}{os.getpid()}-"))  # a running engine's: kept
    manager = JobManager()
    try:
        assert not stale.exists()
        assert alive.exists()
        assert manager.root.exists() and manager.root.name.startswith(f"{JOBS_PREFIX}{os.getpid()}-")
    finally:
        manager.shutdown()
        alive.rmdir()
    assert not manager.root.exists()
