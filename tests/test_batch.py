"""`fixative batch` on a local Ray (issue 17): every good image protected and the manifest complete, a
corrupt file a failed row, a worker killed mid-run and the job still complete with no missing or duplicate
output, a re-run that skips everything, a CSV manifest with per-row options, and a clear line without Ray."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from fixative import metadata
from fixative.hosts.cli import main

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'fixative[ray]')")
OPTIONS = ["--quality", "fast", "--method", "edit"]


RAY_TEMP = Path(__file__).resolve().parents[1] / ".test-scratch" / "ray"  # Ray's session files stay here
RAY_TEMP_MAX = 40  # Ray's Unix sockets live ~66 characters below its temp folder; paths stop at 107


@pytest.fixture(scope="module")
def local_ray():
    if len(str(RAY_TEMP)) > RAY_TEMP_MAX:
        pytest.skip(f"{RAY_TEMP} is too long a path for Ray's sockets (at most {RAY_TEMP_MAX} characters)")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",  # loopback only
        _temp_dir=str(RAY_TEMP),  # inside the checkout, not /tmp/ray
    )
    yield
    ray.shutdown()


@pytest.fixture
def catalogue(tmp_path, small_artwork) -> Path:
    """Eight small distinct images and one corrupt file."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(8):
        small_artwork.crop((index * 12, index * 4, index * 12 + 64, index * 4 + 48)).save(
            folder / f"art{index}.png"
        )
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but not an image")
    return folder


def _map_workers() -> list[int]:
    """Ray Data's actor processes (their title names the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"MapWorker" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _manifest(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "fixative-manifest.jsonl").read_text().splitlines()]


def test_a_killed_worker_loses_nothing_and_a_rerun_skips_everything(
    local_ray, catalogue, tmp_path, taef2_path, capsys
):
    out_dir = tmp_path / "out"
    argv = [
        "batch",
        str(catalogue),
        "--out-dir",
        str(out_dir),
        *OPTIONS,
        "--steps",
        "8",
        "--model",
        str(taef2_path),
    ]
    killed: list[int] = []

    def kill_one_worker_midway() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if out_dir.exists() and len(list(out_dir.glob("*.png"))) >= 2:
                workers = _map_workers()
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed.append(workers[0])
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_midway, daemon=True)
    killer.start()
    assert main(argv) == 2  # the corrupt file is a failed row: the job itself completes
    killer.join(5)
    err = capsys.readouterr().err
    assert killed, "no worker was killed (the run finished too soon?)"
    assert "9 inputs:" in err and "1 failed" in err, err
    entries = _manifest(out_dir)
    assert sorted(Path(e["source"]).name for e in entries) == sorted(p.name for p in catalogue.iterdir())
    bad = next(e for e in entries if e["source"].endswith("corrupt.png"))
    assert bad["status"] == "failed" and "not an image" in bad["error"]
    good = [e for e in entries if e is not bad]
    assert all(e["status"] in ("protected", "skipped") for e in good)  # skipped: finished by the dead one
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == sorted([f"art{i}.protected.png" for i in range(8)] + ["fixative-manifest.jsonl"])
    for index in range(8):  # whole, and each a protected copy of its own input
        with Image.open(out_dir / f"art{index}.protected.png") as image:
            image.load()
            assert metadata.read(image)["method"] == "edit"
    protected = [e for e in good if e["status"] == "protected"]
    assert all(0 < e["strength"] and e["linf_255"] <= 12 and e["psnr_db"] > 30 for e in protected)
    assert len({e["worker"] for e in good}) >= 2

    before = {p.name: p.stat().st_mtime_ns for p in out_dir.glob("*.png")}
    assert main(argv) == 2
    assert "9 inputs: 8 skipped, 0 protected, 1 failed" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.glob("*.png")} == before  # nothing rewritten


def test_a_manifest_sets_options_per_row(local_ray, catalogue, tmp_path, taef2_path, capsys):
    manifest = tmp_path / "rows.csv"
    manifest.write_text(
        "path,method,intensity,output\n"
        f"{catalogue / 'art0.png'},edit,low,\n"
        f"{catalogue / 'art1.png'},style,,{tmp_path / 'named.webp'}\n"
        f"{catalogue / 'art2.png'},edit,loud,\n"
    )
    out_dir = tmp_path / "out"
    argv = ["batch", str(manifest), "--out-dir", str(out_dir), "--quality", "fast", "--steps", "2"]
    assert main([*argv, "--model", str(taef2_path), "--manifest", str(tmp_path / "result.parquet")]) == 2
    import pyarrow.parquet as pq

    rows = {Path(r["source"]).name: r for r in pq.read_table(tmp_path / "result.parquet").to_pylist()}
    assert rows["art0.png"]["status"] == "protected" and rows["art1.png"]["status"] == "protected"
    assert rows["art2.png"]["status"] == "failed" and "loud" in rows["art2.png"]["error"]
    with Image.open(out_dir / "art0.protected.png") as image:
        recorded = metadata.read(image)
        assert recorded["method"] == "edit" and recorded["intensity"] == "low"
    with Image.open(tmp_path / "named.webp") as image:
        assert image.format == "WEBP" and metadata.read(image)["method"] == "style"
    assert "3 inputs: 0 skipped, 2 protected, 1 failed" in capsys.readouterr().err


def test_without_ray_it_says_how_to_get_it(monkeypatch, catalogue, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert main(["batch", str(catalogue), "--out-dir", str(tmp_path / "out")]) == 2
    assert "pip install 'fixative[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_missing_input_or_model_is_said_before_ray_starts(monkeypatch, catalogue, tmp_path, capsys):
    import fixative.hosts.batch.runner as runner

    monkeypatch.setattr(runner, "run_batch", lambda *a, **k: pytest.fail("Ray was started"))
    out = tmp_path / "out"
    typo = tmp_path / "typo.png"
    assert main(["batch", str(catalogue / "art0.png"), str(typo), "--out-dir", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("typo.png: no such file or folder")
    assert main(["batch", str(catalogue), "--model", "no-such-model", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'no-such-model' not found" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_worker_without_its_model_fails_each_row_in_one_line():
    import torch

    from fixative.hosts.batch.runner import ProtectWorker

    threads = torch.get_num_threads()
    try:  # a worker sets its process's torch threads: give this process its own back
        worker = ProtectWorker(models=["no-such-model"], device="cpu", threads=1)  # Ray would retry a raise
    finally:
        torch.set_num_threads(threads)
    row = {"source": "a.png", "output": "out/a.protected.png", "index": 0, "error": "", "target": ""}
    result = worker.one(row)
    assert result["status"] == "failed" and "'no-such-model' not found" in result["error"]
