"""The start bank (issue 18): universal perturbations the optimiser starts from, its file, its training."""

from __future__ import annotations

import json

import pytest
import torch

from fixative.optimise import perceptual_budget, start
from fixative.plugins import hooks
from fixative.targets import TargetRequest, make_target

from .conftest import IMAGES


def _goal(method: str, artwork: torch.Tensor, **kw):
    return make_target(TargetRequest(method=method, artwork=artwork, **kw), hooks())


def test_target_key_names_only_kinds_that_do_not_depend_on_the_users_images():
    art = torch.rand(3, 64, 64)
    assert start.target_key(_goal("style", art, style="charcoal")) == "style:charcoal"
    assert start.target_key(_goal("edit", art)) == "edit:grey"
    assert start.target_key(_goal("edit", art, pattern="pattern")) == "edit:pattern"
    assert start.target_key(_goal("concept", art, image=torch.rand(3, 32, 32))) is None
    assert start.target_key(_goal("style", art, image=torch.rand(3, 32, 32))) is None
    assert start.target_key(_goal("edit", art, image=torch.rand(3, 32, 32))) is None


def test_bank_file_round_trips_and_a_pickle_is_refused(tmp_path):
    pattern = torch.rand(3, 16, 16) * 2 - 1
    path = start.save_bank(start.StartBank("fam", {"edit:grey": pattern}, {"note": "x"}), tmp_path / "b.st")
    bank = start.read_bank(path)
    assert bank.family == "fam" and bank.metadata["note"] == "x"
    assert torch.allclose(bank.patterns["edit:grey"], pattern, atol=1e-3)  # stored as float16
    torch.save({"edit:grey": pattern}, tmp_path / "pickled.st")
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error type; the point: no unpickling
        start.read_bank(tmp_path / "pickled.st")
    start.save_bank(start.StartBank("fam", {"edit:grey": torch.rand(16, 16)}), tmp_path / "flat.st")
    with pytest.raises(ValueError, match="not \\(3, P, P\\)"):
        start.read_bank(tmp_path / "flat.st")


class _Encoder:
    family = "fam"


def test_a_bank_start_is_tiled_inside_the_budget_and_named(monkeypatch):
    art = (torch.rand(3, 40, 72, generator=torch.Generator().manual_seed(1)) * 255).round() / 255
    budget = perceptual_budget(art, 1.0, 12 / 255)
    pattern = torch.ones(3, 16, 16)
    pattern[:, ::2] = -1
    monkeypatch.setattr(start, "bank_for", lambda family: start.StartBank(family, {"edit:grey": pattern}))
    goal = _goal("edit", art)
    begun = start.starting_point(art[None], budget, [_Encoder()], goal, 0.1, torch.Generator().manual_seed(0))
    assert begun.source == "bank fam edit:grey"
    # Inside the box up to what the last (RGB) round of the projection leaves; what is saved is exact.
    assert budget.exceeded(art, art + begun.delta[0], tolerance=0.5 / 255).float().mean() < 0.01
    assert not budget.exceeded(art, budget.quantise(art, begun.delta[0])).any()
    # Most of each pixel's luminance budget is used, with the pattern's sign, repeated every 16 pixels.
    from fixative.optimise.budget import to_ycc

    luma = to_ycc(begun.delta[0])[0]
    assert (luma[0::2].sign() == -1).float().mean() > 0.9 and (luma[1::2].sign() == 1).float().mean() > 0.9
    # Without the bank (or for a target it has no pattern for): seeded noise of random_share of the limit.
    cold = start.starting_point(
        art[None], budget, [_Encoder()], goal, 0.1, torch.Generator().manual_seed(0), use_bank=False
    )
    noise = (torch.rand(1, 3, 40, 72, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.1
    assert cold.source == "random"
    assert torch.allclose(cold.delta, budget.project(start.to_rgb(noise * budget.limit), art[None]))


def test_shipped_taef2_bank_beats_matched_noise_on_artworks_it_never_saw(taef2):
    from training.start_bank import held_out_strength, load_artworks

    bank = start.bank_for("taef2")
    assert bank is not None, "core/fixative/optimise/banks/taef2.safetensors is missing"
    train, held_out = json.loads(bank.metadata["train_images"]), json.loads(bank.metadata["held_out"])
    assert not set(train) & set(held_out)
    assert {"edit:grey", "edit:pattern"} <= set(bank.patterns)
    unseen = load_artworks(str(IMAGES), held_out[:2], 128)
    for key, pattern in bank.patterns.items():
        measured = held_out_strength(pattern, taef2, key, unseen, 1.0, seed=0)
        for bank_strength, noise in zip(measured["bank"], measured["noise"], strict=True):
            assert bank_strength > max(2 * noise, noise + 0.02), (key, measured)


def test_training_script_writes_a_bank_that_moves_features(tmp_path, taef2_path):
    from training.start_bank import main

    out = tmp_path / "bank.safetensors"
    args = ["--encoder", str(taef2_path), "--images", str(IMAGES), "--keys", "edit:grey", "--steps", "3"]
    args += ["--batch", "1", "--size", "128", "--crop", "64", "--period", "32", "--out", str(out)]
    args += ["--train", "mondrian_composition_1913.jpg", "--held-out", "hokusai_great_wave.jpg"]
    assert main(args) == 0
    bank = start.read_bank(out)
    assert bank.family == "taef2" and bank.patterns["edit:grey"].shape == (3, 32, 32)
    assert json.loads(bank.metadata["train_images"]) == ["mondrian_composition_1913.jpg"]
    measured = json.loads(bank.metadata["held_out_strength"])["edit:grey"]
    assert measured["bank"][0] > measured["noise"][0]
    with pytest.raises(SystemExit, match="overlap"):
        main([*args[:-4], "--train", "a.jpg,b.jpg", "--held-out", "b.jpg"])


def test_protect_reports_where_it_started(taef2, small_artwork, anchor_path):
    from fixative.api import protect

    edit = protect(small_artwork, "edit", models=taef2, quality="fast", steps=1)
    assert edit.report.start == "bank taef2 edit:grey"
    concept = protect(small_artwork, "concept", models=taef2, quality="fast", steps=1, target=anchor_path)
    assert concept.report.start == "random"


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--keys", "style:nope"], "unknown kind 'style:nope'"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--crop", "900"], "larger than --size"),
        (["--train", "no_such_artwork.jpg", "--held-out", "hokusai_great_wave.jpg"], "no such file"),
    ],
)
def test_training_script_refuses_bad_settings_in_one_line(bad, says, taef2_path, tmp_path):
    from training.start_bank import main

    with pytest.raises(SystemExit, match=says) as stopped:
        main(["--encoder", str(taef2_path), "--images", str(IMAGES), "--out", str(tmp_path / "b"), *bad])
    assert "\n" not in str(stopped.value)
    assert not (tmp_path / "b").exists()


def test_a_damaged_bank_means_a_start_from_noise(monkeypatch, tmp_path):
    (tmp_path / "fam.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    monkeypatch.setattr(start, "BANKS", tmp_path)
    start.bank_for.cache_clear()
    try:
        with pytest.warns(UserWarning, match="unreadable"):
            assert start.bank_for("fam") is None
    finally:
        start.bank_for.cache_clear()
