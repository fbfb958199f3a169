"""The benchmark's smoke mode runs end to end at tiny sizes, so the suite cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run as bench_run


@pytest.mark.usefixtures("taef2_path")
def test_smoke_writes_table_and_json(tmp_path):
    argv = [
        "--smoke",
        "--sizes",
        "32,64",
        "--race-sizes",
        "32",
        "--ref-steps",
        "3",
        "--encoders",
        "taef2",
        "--race-encoders",
        "taef2",
        "--qualities",
        "fast,default",
        "--method",
        "edit",
        "--cold",
        "--out",
        str(tmp_path),
    ]
    assert bench_run.main(argv) == 0
    result = json.loads((tmp_path / "latest.json").read_text())
    table = (tmp_path / "latest.md").read_text()
    runners = [r["runner"] for r in result["race"]]
    assert runners == ["reference", "fast", "default", "fast (random start)"]  # default: no bank to drop
    starts = [r["start"] for r in result["race"]]
    assert starts == ["none (reference)", "bank taef2 edit:grey", "random", "random"]
    reference = result["race"][0]
    assert reference["steps"] == 3 and 0 < reference["strength"] <= 1
    for row in result["race"][1:]:
        assert row["linf_255"] <= 8 + 1e-3  # the shared budget holds (float32 rounding aside)
        assert row["strength_jpeg75"] is not None and row["strength_resize0.5"] is not None
        assert row["decoded_share"] is not None  # taef2's decoder is beside its encoder
        assert row["speedup"] > 0 and row["steps"] >= 1
    scan = {(r["size"], r["runner"]) for r in result["rate"]}
    assert {(32, "fixative"), (64, "fixative"), (32, "reference")} <= scan
    assert all(r["peak_rss_mb"] > 0 and r["seconds_per_step"] > 0 for r in result["rate"])
    # the scan times `default`'s step: with taef2's decoder beside it, what the model sees too
    assert all(r["view"] for r in result["rate"] if r["runner"] == "fixative")
    assert "taef2/fixative" in result["growth"]
    assert "| taef2 | 32² | reference |" in table and "## Growth with pixel count" in table


def test_sd_sized_encoder_is_the_sd15_configuration(tmp_path):
    from bench.probe import load_encoder

    encoder = load_encoder("sd", str(tmp_path))
    params = sum(p.numel() for p in encoder.encoder.vae.encoder.parameters())
    assert encoder.latent_channels == 4 and encoder.downscale == 8
    assert 30e6 < params < 40e6  # the SD1.5 VAE encoder has about 34 million parameters


def test_reference_is_skipped_with_the_reason_where_it_cannot_fit(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_run, "physical_memory_gb", lambda: 8.0)
    assert bench_run.reference_does_not_fit("taef2", 1024) is None  # ~3 GB
    reason = bench_run.reference_does_not_fit("taef2", 2048)
    assert reason and "GB" in reason and "8 GB" in reason
    args = bench_run.parse_args(["--race-sizes", "4096", "--race-encoders", "sd", "--out", str(tmp_path)])
    logged: list[str] = []
    rows = bench_run.race(args, logged.append)  # nothing runs: the reference cannot fit
    assert [r["runner"] for r in rows] == ["reference"] and "GB" in rows[0]["skipped"]
    assert "not run" in logged[0]
    machine = {**bench_run.machine(0), "load_end": 0.0}
    result = {"started": "now", "machine": machine, "config": {"method": "style", "ref_steps": 100}}
    table = bench_run.markdown({**result, "race": rows, "rate": [], "growth": {}})
    assert "| sd | 4096² | reference | not run: the whole-image reference needs about" in table


def test_table_leaves_out_the_parts_that_were_not_run():
    machine = {"cpu": "cpu", "cores": 2, "memory_gb": 8, "torch": "2", "threads": 2}
    machine |= {"load_start": 0, "load_end": 0}
    race_row = {
        "encoder": "taef2", "size": 64, "runner": "reference", "seconds": 1.0, "steps": 3, "strength": 0.5,
        "strength_jpeg75": 0.3, "strength_resize0.5": 0.2, "peak_rss_mb": 100, "load": 1.0,
    }  # fmt: skip
    result = {
        "started": "now", "machine": machine, "config": {"method": "style", "ref_steps": 3},
        "race": [race_row], "rate": [], "growth": {},
    }  # fmt: skip
    table = bench_run.markdown(result)
    assert "| taef2 | 64² | reference |" in table
    assert "## Seconds per step" not in table and "## Growth" not in table


def test_commands_that_need_no_model_never_import_torch(tmp_path):
    """What bench.startup times, checked for imports only (the timing is the benchmark's)."""
    from bench.startup import HEAVY, commands, imported_modules

    for name, argv in commands(tmp_path).items():
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "fixative", *argv], capture_output=True, text=True
        )
        assert proc.returncode in (0, 2), (name, proc.stderr[-500:])
        assert not imported_modules(proc.stderr) & set(HEAVY), name


def test_the_frontier_plot_has_a_line_per_method_and_measure():
    from bench.visibility import frontier_points, frontier_svg

    rows = [
        {"image": img, "size": 256, "method": m, "budget": f"{s} JND", "flat_rms_255": 1.3 * s,
         "jnd_exceed_share": 0.0, "strength": 0.2 * s + i, "decoded_share": 0.1 * s, "noise_strength": 0.01}
        for m in ("style", "edit") for s in (0.5, 1.0, 2.0) for i, img in enumerate(("a", "b"))
    ]  # fmt: skip
    points = frontier_points({"rows": rows})
    assert [q["budget"] for q in points["style"]] == ["0.5 JND", "1.0 JND", "2.0 JND"]
    assert abs(points["edit"][1]["strength"] - 0.7) < 1e-9  # the mean over images
    svg = frontier_svg({"rows": rows, "label": "test"})
    assert svg.startswith("<svg") and svg.count("<polyline") == 4


def test_the_quick_device_check_runs_on_a_cpu(tmp_path):
    """`python -m bench.run --device cuda --quick` is the GPU command; the same code on a CPU, shrunk."""
    done = subprocess.run(
        [
            *[sys.executable, "-m", "bench.run", "--quick", "--smoke", "--device", "cpu"],
            *["--compile", "eager", "--out", str(tmp_path)],
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "latest-quick.json").read_text())
    assert [r["precision"] for r in result["steps"]] == ["fp32", "bf16"]
    for row in result["steps"]:  # counted, not assumed: forward and backward cost more than forward alone
        assert row["step_tflop"] > row["forward_tflop"] > 0 and row["seconds_per_step"] > 0
        assert row["flop_limit_seconds"] == row["step_tflop"] / row["peak_tflops"]
    # torch.compile's path (TorchDynamo tracing the encoder and decoder) runs; on a GPU the modes that
    # generate kernels and CUDA graphs are timed the same way.
    [compiled] = result["compiled"]
    assert compiled["mode"] == "eager" and compiled["seconds_per_step"] > 0
    assert [(r["encoder"], r["compile"]) for r in result["protect"]] == [
        ("sd", None),
        ("taef2", None),
        ("taef2", "eager"),  # the SD-sized one in the real run (its tracing alone takes 15 s here)
    ]
    assert "share of limit" in (tmp_path / "latest-quick.md").read_text() and result["finished"] is True
    # the compiled protection counts its compilations (dynamic shapes: a served draw is a new size)
    assert result["protect"][-1]["graphs_compiled"] >= 2 and "graphs_compiled" not in result["protect"][0]


def test_a_quick_check_stopped_midway_leaves_what_it_measured(monkeypatch, tmp_path):
    """A lent GPU machine stops a command at its time limit: each finished part is written at once."""
    import argparse

    from bench import quick

    row = {"precision": "fp32", "seconds_per_step": 0.5, "step_tflop": 2.0, "forward_tflop": 1.0}
    row.update(peak_tflops=100.0, flop_limit_seconds=0.02, share_of_limit=0.04)

    def stopped(args, image, log, save):
        save({"device": "GPU", "size": 512, "steps": [row], "protect": []})
        raise KeyboardInterrupt  # the machine's limit

    monkeypatch.setattr(quick, "quick", stopped)
    with pytest.raises(KeyboardInterrupt):
        quick.main(argparse.Namespace(out=str(tmp_path)), "art.png", print)
    left = json.loads((tmp_path / "latest-quick.json").read_text())
    assert left["finished"] is False and left["steps"] == [row]
    assert "Unfinished" in (tmp_path / "latest-quick.md").read_text()


def test_the_device_kit_holds_the_models_the_artwork_and_its_script(tmp_path, taef2_path, artwork_path):
    """``python -m bench.device_kit`` (wheels left out here: they come from the package index)."""
    from bench import device_kit

    shared = artwork_path.parents[1]
    assert device_kit.main(["--out", str(tmp_path / "kit"), "--shared", str(shared), "--no-wheels"]) == 0
    kit = tmp_path / "kit"
    assert (kit / "models" / "taesd" / "taef2_encoder.pth").read_bytes() == (
        shared / "models" / "taesd" / "taef2_encoder.pth"
    ).read_bytes()
    script = (kit / "run.sh").read_text()
    assert "bench.run --quick" in script and "hokusai_great_wave.jpg" in script and "--no-index" in script
    assert all("==" in p and p.split("==")[1] for p in device_kit.pinned())  # versions installed here


def test_efficacy_preset_wins_over_a_per_method_change(monkeypatch):
    """`--preset view_every=3` must run every method at 3, also in an engine whose presets.BY_METHOD (an
    --engine checkout of 2026-12-06) set it to 2 for one method."""
    import fixative.presets as presets
    from bench.efficacy import CHANGE_PRESET

    fast = presets.QUALITIES["fast"]
    monkeypatch.setattr(presets, "QUALITIES", dict(presets.QUALITIES))
    by_method = {"default": {"style": {"view_every": 2, "steps": 7}}}
    monkeypatch.setattr(presets, "BY_METHOD", by_method, raising=False)
    exec(CHANGE_PRESET, {"spec": {"quality": "default", "preset": {"view_every": 3}}})
    assert presets.quality("default").view_every == 3
    assert by_method == {"default": {"style": {"steps": 7}}}  # what --preset leaves alone stays
    assert presets.quality("fast") == fast


def test_efficacy_preset_changes_are_read_as_numbers():
    from bench.efficacy import preset_changes

    assert preset_changes("latent_weight=0, eot_samples=0,view_weight=2.5") == {
        "latent_weight": 0,
        "eot_samples": 0,
        "view_weight": 2.5,
    }
    assert preset_changes("") == {}
    with pytest.raises(SystemExit, match="not name=value"):
        preset_changes("latent_weight")


def test_efficacy_measures_what_the_model_sees_after_each_cleaner(taef2, small_artwork):
    """A cleaner that changes nothing leaves the clean decoded share; JPEG 50 leaves less; a cleaner that
    needs the decoder (IMPRESS) is measured in the same pass as its latent strength (``robustness``, which
    bench.efficacy reads its ``decoded_after`` from)."""
    import numpy as np
    import torch

    import fixative
    from fixative.checks import purify
    from fixative.checks.robustness import robustness
    from fixative.features import StrengthProbe
    from fixative.plugins import hooks
    from fixative.targets import TargetRequest, make_target

    image = small_artwork.resize((96, 64))
    art = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    protected = fixative.protect(image, "edit", models=[taef2], steps=4).rgb
    probe = StrengthProbe.build(taef2, make_target(TargetRequest("edit", art), hooks()), art)
    cleaners = [
        purify.Purification("nothing", lambda x: x),
        purify.Purification("jpeg 50", lambda x: purify.jpeg(x, 50)),
        purify.Purification("crop 10% + resize", lambda x: purify.crop_resize(x, 0.1), moves_pixels=True),
        purify.Purification("impress", lambda x, d: x, needs="decoder"),
    ]
    rows = robustness([probe], protected, art, cleaners, None, [])
    seen = {r.purification: r.decoded_share for r in rows if r.decoded_share is not None}
    assert set(seen) == {"nothing", "jpeg 50", "crop 10% + resize", "impress"}
    assert abs(seen["nothing"] - probe.decoded_share(protected, art)) < 1e-3
    assert seen["jpeg 50"] < seen["nothing"]
    # with matched noise, each figure after a cleaner gets its null, and the report's tables show both
    from bench.efficacy import after_table
    from fixative.checks.null import matched_noise

    noise = matched_noise(art, protected, seed=1)
    rows = robustness([probe], protected, art, cleaners, None, [], noise)
    assert all(r.noise_strength is not None and r.noise_decoded_share is not None for r in rows)
    nothing = rows[0]
    assert abs(nothing.noise_strength - probe.strength(noise, art)[0]) < 1e-3
    row = {"image": "a", "size": 96, "method": "edit", "strength": 0.3, "after": {"jpeg 50": 0.1}}
    row["noise_after"] = {"jpeg 50": 0.004}
    table = after_table({"cleaners": ["jpeg 50"], "rows": [row]}, "Left", "strength", "after", "noise_after")
    assert "| a 96² | edit | 0.300 | 0.100 (0.004) |" in table


@pytest.mark.usefixtures("taef2_path")
def test_the_memory_bench_reads_a_whole_protects_peak_and_fails_over_its_limit(capsys):
    """bench.memory runs a real `fixative protect` in a fresh process and fails (exit 1) over the limit."""
    from bench import memory

    assert memory.main(["--size", "64", "--steps", "1", "--limit-gb", "0.01", "--model", "taef2"]) == 1
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["within"] is False and line["peak_rss_gb"] > 0.1 and line["strength"] is not None
    assert line["encoders"] == ["taef2"]  # the model asked for, as the report names it


def test_the_memory_bench_can_cut_every_pass_to_a_few_tiles(taef2_path, small_artwork, tmp_path, monkeypatch):
    """``--max-tiles`` (a whole SD-sized 4096² run in minutes) runs the real protect with every pass, the
    optimiser's and the probes', over the first tiles only; 0 leaves them all."""
    from bench import memory
    from fixative import features
    from fixative.optimise import loop

    every = features.tiles
    monkeypatch.setattr(features, "tiles", every)  # restored afterwards: the cut replaces both
    monkeypatch.setattr(loop, "tiles", every)
    counted: dict[str, list[int]] = {"optimiser": [], "probes": []}
    prepare, build = loop.prepare, features.StrengthProbe.build.__func__

    def prepared(*args, **kwargs):
        problem = prepare(*args, **kwargs)
        counted["optimiser"].append(len(problem.tiles))
        return problem

    def built(cls, *args, **kwargs):
        probe = build(cls, *args, **kwargs)
        counted["probes"].append(len(probe.tiles))
        return probe

    monkeypatch.setattr(loop, "prepare", prepared)
    monkeypatch.setattr(features.StrengthProbe, "build", classmethod(built))
    source = tmp_path / "art.png"
    small_artwork.save(source)
    common = ["protect", str(source), "--model", str(taef2_path), "--steps", "1", "--tile", "96", "-q"]
    assert memory.protect_with_tiles_cut(2, [*common, "-o", str(tmp_path / "cut.png")]) == 0
    assert counted["optimiser"] == [2] and set(counted["probes"]) == {2}
    monkeypatch.setattr(features, "tiles", every)
    monkeypatch.setattr(loop, "tiles", every)
    counted = {"optimiser": [], "probes": []}
    assert memory.protect_with_tiles_cut(0, [*common, "-o", str(tmp_path / "all.png")]) == 0
    assert counted["optimiser"][0] > 2 and min(counted["probes"]) > 2


@pytest.mark.usefixtures("taef2_path", "artwork_path")
def test_the_orientation_bench_measures_both_ways_upright(tmp_path):
    from bench import orientation

    argv = [
        "--images",
        "hokusai_great_wave.jpg",
        "--methods",
        "edit",
        "--size",
        "64x48",
        "--out",
        str(tmp_path),
    ]
    assert orientation.main(argv) == 0
    (row,) = json.loads((tmp_path / "latest-orientation.json").read_text())
    shown = row["as displayed"]
    assert shown["upright"] == pytest.approx(shown["reported"], abs=0.01)
    assert row["stored pixels"]["upright"] < row["stored pixels"]["reported"]
    assert "| edit |" in (tmp_path / "latest-orientation.md").read_text()


def test_the_flat_bench_scores_every_target_and_protects_both_ways(tmp_path):
    from bench import flat

    argv = ["--sizes", "64", "--protect", "grey", "--protect-size", "64", "--out", str(tmp_path)]
    assert flat.main(argv) == 0
    data = json.loads((tmp_path / "latest-flat.json").read_text())
    grey = next(r for r in data["reach"] if r["picture"] == "grey")
    assert grey["under_floor"] == ["style:chosen", "edit:chosen"] and grey["reach"]["edit:pattern"] > -0.5
    assert all(not r["under_floor"] for r in data["reach"] if r["picture"].endswith((".jpg", ".png")))
    edit = next(r for r in data["protect"] if r["method"] == "edit")
    assert edit["first choice named"]["target"] == "grey" and edit["Fixative's choice"]["target"] == "pattern"
    assert "| grey | edit | Fixative's choice | pattern |" in (tmp_path / "latest-flat.md").read_text()
