"""The ComfyUI node pack, run the way ComfyUI runs it: loaded from its folder as a package, node functions
called under ``torch.inference_mode()`` with IMAGE tensors [B, H, W, C], progress through the global hook
that raises on Cancel. ComfyUI itself is not installable here, so ``tests/comfy_stubs`` stands in for
``comfy.*`` and ``folder_paths``. Real taef2 weights from ../shared; tiny images, few steps."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import DEFAULT_EPS_255, ROOT, TAESD_DIR, tiny_kl_config

STUBS = Path(__file__).parent / "comfy_stubs"
PACK = ROOT / "comfyui_nodes"
EPS = DEFAULT_EPS_255 / 255


@pytest.fixture(scope="module")
def comfy():
    """Put the ComfyUI stand-ins on the path for this module only."""
    sys.path.insert(0, str(STUBS))
    import comfy.model_management
    import comfy.sd
    import comfy.utils
    import folder_paths

    yield {"utils": comfy.utils, "mm": comfy.model_management, "sd": comfy.sd, "folder_paths": folder_paths}
    sys.path.remove(str(STUBS))
    for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.") or n == "folder_paths"]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def models_dir(comfy, tmp_path_factory):
    """A ComfyUI models/ tree whose vae_approx holds (links to) the real taef2 encoder and decoder."""
    for name in ("taef2_encoder.pth", "taef2_decoder.pth"):
        if not (TAESD_DIR / name).exists():
            pytest.skip(f"{TAESD_DIR / name} not present")
    root = tmp_path_factory.mktemp("comfy_models")
    for sub in ("vae", "vae_approx", "checkpoints"):
        (root / sub).mkdir()
    for name in ("taef2_encoder.pth", "taef2_decoder.pth"):
        (root / "vae_approx" / name).symlink_to(TAESD_DIR / name)
    comfy["folder_paths"].set_models_dir(str(root))
    return root


@pytest.fixture(scope="module")
def pack(comfy):
    """Import the pack exactly as ComfyUI's ``load_custom_node`` does (module named after the folder)."""
    name = "comfyui-fixative"
    spec = importlib.util.spec_from_file_location(
        name, PACK / "__init__.py", submodule_search_locations=[str(PACK)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@pytest.fixture(scope="module")
def taef2_vae(comfy):
    """A ComfyUI VAE holding taef2, built under inference mode as ComfyUI's VAELoader builds it."""
    sd = {}
    for part in ("encoder", "decoder"):
        state = torch.load(TAESD_DIR / f"taef2_{part}.pth", map_location="cpu", weights_only=True)
        sd.update({f"taesd_{part}.{k}": v for k, v in state.items()})
    with torch.inference_mode():
        return comfy["sd"].VAE(sd=sd)


def _comfy_image(pil, size) -> torch.Tensor:
    """A PIL image as ComfyUI's LoadImage hands it on: [1, H, W, 3] float32 0..1 (an inference tensor)."""
    small = pil.convert("RGB").resize(size)
    with torch.inference_mode():
        return torch.from_numpy(np.asarray(small).astype(np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def artworks(small_artwork):
    """Two different 48x64 crops of the Great Wave as one ComfyUI batch [2, 48, 64, 3]."""
    a = _comfy_image(small_artwork.crop((0, 0, 128, 96)), (64, 48))
    b = _comfy_image(small_artwork.crop((90, 40, 218, 136)), (64, 48))
    with torch.inference_mode():
        return torch.cat([a, b])


@pytest.fixture(scope="module")
def target(anchor_path):
    from PIL import Image

    return _comfy_image(Image.open(anchor_path), (64, 48))


def _snapshot(module: torch.nn.Module) -> dict:
    with torch.inference_mode(False):
        return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _distance_to(encoder, images: torch.Tensor, goal: torch.Tensor) -> list[float]:
    with torch.no_grad():
        z = encoder(images.permute(0, 3, 1, 2).float().clone())
        zt = encoder(goal.permute(0, 3, 1, 2).float().clone())
    return [float((z[i] - zt[0]).pow(2).mean()) for i in range(z.shape[0])]


@pytest.fixture(scope="module")
def protected(comfy, pack, taef2_vae, artworks, target):
    """Protect Image with the taef2 VAE on the wire, batch of 2, edit toward a photo, under inference mode."""
    updates: list = []
    comfy["utils"].install_server_hook(updates)
    before = _snapshot(taef2_vae.first_stage_model)
    caches = comfy["mm"].soft_empty_cache_calls
    node = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]()
    with torch.inference_mode():
        out, report = getattr(node, node.FUNCTION)(
            image=artworks,
            method="edit",
            intensity="default",
            quality="fast",
            seed=7,
            vae=taef2_vae,
            target=target,
            steps=4,
        )
    comfy["utils"].set_progress_bar_global_hook(None)
    return {
        "out": out,
        "report": json.loads(report),
        "updates": updates,
        "before": before,
        "caches": comfy["mm"].soft_empty_cache_calls - caches,
    }


def test_pack_loads_like_comfyui(pack, models_dir):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        assert "required" in spec and cls.CATEGORY == "Fixative"
        assert callable(getattr(cls(), cls.FUNCTION)), key
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
    choices = pack.NODE_CLASS_MAPPINGS["FixativeLoadProtectionEncoder"].INPUT_TYPES()["required"]["model"][0]
    assert choices == ["vae_approx/taef2_encoder.pth"]  # decoders are not offered as encoders


def test_the_check_example_wires_protect_images_report_into_the_check(pack):
    """Every link of protect_and_check.json joins an output to an input of the same type, by the names the
    nodes declare (Fixative's nodes) or ComfyUI's (LoadImage, SaveImage, PreviewImage)."""
    workflow = json.loads((PACK / "example_workflows" / "protect_and_check.json").read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert [n["type"] for n in workflow["nodes"]] == [
        "LoadImage", "FixativeProtectImage", "SaveImage", "FixativeCheckProtection", "PreviewImage"
    ]  # fmt: skip
    check = pack.NODE_CLASS_MAPPINGS["FixativeCheckProtection"]
    spec = check.INPUT_TYPES()
    declared = {k: v[0] for part in ("required", "optional") for k, v in spec[part].items()}
    for node in workflow["nodes"]:
        if node["type"] == "FixativeCheckProtection":
            assert {i["name"]: i["type"] for i in node["inputs"]} == {
                k: t for k, t in declared.items() if t != "BOOLEAN"
            }
            assert [o["name"] for o in node["outputs"]] == list(check.RETURN_NAMES)
    for link_id, src, out_slot, dst, in_slot, kind in workflow["links"]:
        output, given = nodes[src]["outputs"][out_slot], nodes[dst]["inputs"][in_slot]
        assert output["type"] == given["type"] == kind and link_id in output["links"]
        assert given["link"] == link_id
    wired = {nodes[dst]["inputs"][slot]["name"] for _, _, _, dst, slot, _ in workflow["links"] if dst == 4}
    assert wired == {"image", "original", "report"}


def test_example_workflow_matches_the_nodes(pack):
    workflow = json.loads((PACK / "example_workflows" / "protect_image.json").read_text())
    types = [n["type"] for n in workflow["nodes"]]
    assert types == ["LoadImage", "FixativeProtectImage", "SaveImage"]
    ids = {n["id"] for n in workflow["nodes"]}
    for _link, src, _, dst, _, kind in workflow["links"]:
        assert src in ids and dst in ids and kind == "IMAGE"
    node = next(n for n in workflow["nodes"] if n["type"] == "FixativeProtectImage")
    spec = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"].INPUT_TYPES()
    widgets = [
        k
        for part in ("required", "optional")
        for k, v in spec[part].items()
        if isinstance(v[0], list) or v[0] in ("INT", "STRING", "FLOAT")
    ]
    assert len(node["widgets_values"]) == len(widgets) + 1  # + the seed's "control after generate"
    assert node["widgets_values"][:3] == ["style", "default", "default"]


def test_protect_keeps_shape_range_and_budget(protected, artworks):
    out = protected["out"]
    assert out.shape == artworks.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    change = (out - artworks).abs()
    assert float(change.max()) <= EPS + 1e-6
    assert all(float(change[b].max()) > 1 / 255 for b in range(out.shape[0]))  # every image was protected
    # What stock SaveImage writes (it truncates 255 * x): exact k/255 values, so never one level over the cap.
    saved = np.clip(255.0 * out.numpy(), 0, 255).astype(np.uint8).astype(int)
    original = np.clip(255.0 * artworks.numpy(), 0, 255).astype(np.uint8).astype(int)
    assert np.abs(saved - original).max() <= DEFAULT_EPS_255
    assert np.array_equal(saved, np.round(255.0 * out.numpy()).astype(int))  # on the grid


def test_off_grid_inputs_are_saved_within_the_cap(pack, taef2_vae, artworks):
    """A float image that is not on the 8-bit grid (an upstream node's output): still within the cap once
    SaveImage truncates it, where float arithmetic used to put 31-98 values one level over."""
    g = torch.Generator().manual_seed(3)
    image = (artworks[:1] + torch.rand(artworks[:1].shape, generator=g) / 255).clamp(0, 1)
    with torch.inference_mode():
        node = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]()
        out, _ = node.protect(
            image=image, method="style", intensity="default", quality="fast", seed=0, vae=taef2_vae, steps=2
        )
    saved = np.clip(255.0 * out.numpy(), 0, 255).astype(np.uint8).astype(int)
    original = np.clip(255.0 * image.numpy(), 0, 255).astype(np.uint8).astype(int)
    assert np.abs(saved - original).max() <= DEFAULT_EPS_255


def test_protect_moves_features_toward_the_target(protected, artworks, target, taef2):
    before = _distance_to(taef2, artworks, target)
    after = _distance_to(taef2, protected["out"], target)
    assert all(a < b for a, b in zip(after, before, strict=True)), (before, after)
    images = protected["report"]["images"]
    assert len(images) == 2 and all(r["strength"] > 0 for r in images)
    assert images[0]["encoders"][0]["family"] == "comfyui-taef2"
    summary = protected["report"]["summary"].splitlines()
    assert summary[0].startswith("protected 2 image(s) with ")
    for line, report in zip(summary[1:], images, strict=True):  # each figure beside its null
        assert f"strength {report['strength']:.2f} (matched noise " in line, line


def test_protect_leaves_the_shared_vae_alone_and_reports_progress(protected, taef2_vae):
    after = taef2_vae.first_stage_model.state_dict()
    assert all(torch.equal(protected["before"][k], after[k]) for k in after)
    assert all(p.is_inference() for p in taef2_vae.first_stage_model.parameters())  # still ComfyUI's own
    values = [v for v, _ in protected["updates"]]
    assert values == sorted(values) and values[-1] == protected["updates"][-1][1] == 8  # 2 images x 4 steps
    assert protected["caches"] >= 1  # memory handed back


def test_mask_limits_the_change(comfy, pack, taef2_vae, artworks):
    image = artworks[:1]
    with torch.inference_mode():
        mask = torch.zeros(1, 48, 64)
        mask[:, :, :32] = 1.0  # left half only
        node = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]()
        out, _ = node.protect(
            image=image,
            method="style",
            intensity="high",
            quality="fast",
            seed=0,
            vae=taef2_vae,
            mask=mask,
            steps=2,
        )
    change = (out - image).abs()
    assert float(change[..., 32:, :].max()) == 0.0
    assert float(change[..., :32, :].max()) > 0


def test_a_mask_of_another_size_is_an_error_naming_both(pack, taef2_vae, artworks):
    node = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]()
    with torch.inference_mode(), pytest.raises(ValueError, match=r"mask is 32x24 but the image is 64x48"):
        node.protect(
            image=artworks[:1], method="style", intensity="default", quality="fast", seed=0,
            vae=taef2_vae, mask=torch.ones(1, 24, 32), steps=1,
        )  # fmt: skip


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (3, 7)])
def test_tiny_images_are_protected_at_their_own_size(pack, taef2_vae, size):
    height, width = size
    image = torch.rand(1, height, width, 3)
    image = torch.floor(image * 255) / 255
    node = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]()
    with torch.inference_mode():
        out, _ = node.protect(
            image=image, method="style", intensity="default", quality="fast", seed=0, vae=taef2_vae, steps=1
        )
    assert out.shape == image.shape
    assert float((out - image).abs().max()) <= DEFAULT_EPS_255 / 255 + 1e-6


def test_interrupt_from_the_progress_hook_stops_the_node(comfy, pack, taef2_vae, artworks):
    mm = comfy["mm"]
    seen: list = []

    def hook(value, total, preview, prompt_id=None, node_id=None):
        seen.append(value)
        if len(seen) == 2:
            mm.interrupt_current_processing(True)  # the user presses Cancel during the run
        mm.throw_exception_if_processing_interrupted()

    comfy["utils"].set_progress_bar_global_hook(hook)
    caches = mm.soft_empty_cache_calls
    try:
        with torch.inference_mode(), pytest.raises(mm.InterruptProcessingException):
            pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]().protect(
                image=artworks,
                method="style",
                intensity="default",
                quality="fast",
                seed=0,
                vae=taef2_vae,
                steps=6,
            )
    finally:
        comfy["utils"].set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert len(seen) == 2  # nothing ran after the cancel
    assert mm.soft_empty_cache_calls > caches


def test_interrupt_flag_cancels_through_the_engine(comfy, pack, taef2_vae, artworks):
    mm = comfy["mm"]
    mm.interrupt_current_processing(True)  # no progress hook: the engine's cancel= check must notice
    try:
        with torch.inference_mode(), pytest.raises(mm.InterruptProcessingException):
            pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]().protect(
                image=artworks[:1],
                method="style",
                intensity="default",
                quality="fast",
                seed=0,
                vae=taef2_vae,
                steps=4,
            )
        assert not mm.processing_interrupted()  # raised the ComfyUI way, which clears the flag
    finally:
        mm.interrupt_current_processing(False)


def test_concept_needs_an_anchor(pack, taef2_vae, artworks):
    from fixative.errors import FixativeError

    with torch.inference_mode(), pytest.raises(FixativeError, match="anchor image"):
        pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]().protect(
            image=artworks,
            method="concept",
            intensity="default",
            quality="fast",
            seed=0,
            vae=taef2_vae,
            concept="a dog",
            steps=1,
        )


def test_autoencoder_kl_vae(comfy, pack, artworks, target):
    """A tiny random diffusers AutoencoderKL inside a ComfyUI-style VAE (KL kind, built in inference mode)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    with torch.inference_mode():
        model = AutoencoderKL(**tiny_kl_config())
        reference = {k: v.clone() for k, v in model.state_dict().items()}
        vae = comfy["sd"].VAE(first_stage_model=comfy["sd"].AutoencoderKL(model), latent_channels=4)
        image = artworks[:1]
        out, report = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"]().protect(
            image=image,
            method="edit",
            intensity="default",
            quality="fast",
            seed=0,
            vae=vae,
            target=target,
            steps=2,
        )
    assert out.shape == image.shape and float((out - image).abs().max()) <= EPS + 1e-6
    first = json.loads(report)["images"][0]["encoders"][0]
    assert first["family"] == "comfyui-kl-4ch" and first["distance_after"] < first["distance_before"]
    assert all(p.is_inference() for p in vae.first_stage_model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key])


def test_load_encoder_chain_and_check(comfy, pack, models_dir, protected, artworks):
    loader = pack.NODE_CLASS_MAPPINGS["FixativeLoadProtectionEncoder"]()
    with torch.inference_mode():
        (one,) = loader.load("vae_approx/taef2_encoder.pth")
        (two,) = loader.load("vae_approx/taef2_encoder.pth", encoder=one)
        check = pack.NODE_CLASS_MAPPINGS["FixativeCheckProtection"]()
        report, sees = check.check(protected["out"], original=artworks, encoder=one)
        bare, _ = check.check(artworks[:1])  # no encoder given: found in ComfyUI's vae_approx folder
    assert len(one) == 1 and len(two) == 2
    assert not any(p.is_inference() for p in one[0].parameters())
    assert sees.shape == protected["out"].shape and 0 <= float(sees.min()) and float(sees.max()) <= 1
    images = json.loads(report)["images"]
    assert len(images) == 2
    for entry in images:
        direct = entry["noise_comparison"] if entry["measured_by"] == "fixative.check" else entry
        assert direct["perceptual"]["linf_255"] <= DEFAULT_EPS_255 and direct["encoders"][0]["vs_noise"] > 1
        assert "verdict" not in direct  # a target-free shift is no verdict: a JPEG 75 copy scores 3x noise
    assert "original" in json.dumps(json.loads(bare))


def test_check_measures_the_strength_with_protect_images_report(pack, protected, artworks, target, taef2_vae):
    """IMAGE tensors carry no metadata, so alone the check reads "not measured"; with Protect Image's report
    (and its target image) connected it rebuilds the target and measures what Protect Image reported."""
    check = pack.NODE_CLASS_MAPPINGS["FixativeCheckProtection"]()
    report = json.dumps(protected["report"])
    with torch.inference_mode():
        alone, _ = check.check(protected["out"], original=artworks, vae=taef2_vae)
        measured, _ = check.check(
            protected["out"], original=artworks, vae=taef2_vae, report=report, target=target
        )
    assert all(entry["verdict"] == "not measured" for entry in json.loads(alone)["images"])
    for entry, said in zip(json.loads(measured)["images"], protected["report"]["images"], strict=True):
        assert entry["measured_by"] == "fixative.check" and entry["target"]["rebuilt"] is True
        assert entry["strength"] == pytest.approx(said["strength"], abs=0.01)
        assert entry["target"]["hash_match"] is True
    with pytest.raises(Exception, match="report is of 2 image"):
        check.check(protected["out"][:1], original=artworks[:1], vae=taef2_vae, report=report)


def test_load_encoder_unknown_file(pack, models_dir):
    from fixative.errors import FixativeError

    with pytest.raises(FixativeError, match="not found"):
        pack.NODE_CLASS_MAPPINGS["FixativeLoadProtectionEncoder"]().load("vae/missing.safetensors")


def test_concept_poison_caption(pack):
    from fixative.errors import FixativeError

    node = pack.NODE_CLASS_MAPPINGS["FixativeConceptPoisonCaption"]()
    caption = node.caption("  a   dog ", "a picture of {concept}", "oil painting, ")
    assert caption == ("a picture of a dog, oil painting",)
    with pytest.raises(FixativeError):
        node.caption("", "{concept}")
    with pytest.raises(FixativeError):
        node.caption("a dog", "no placeholder")


# ---- fixative install comfyui -------------------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# A stand-in for ComfyUI's interpreter: answers the installer's probe, records pip calls.
here=$(dirname "$0")
echo "$*" >> "$here/calls.log"
if [ "$1" = "-c" ]; then
  if [ -f "$here/installed" ]; then v="\\"$(cat "$here/installed")\\""; else v=null; fi
  echo "{\\"python\\": \\"3.11\\", \\"fixative\\": $v}"
  exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "0.1.0" > "$here/installed"; exit 0; fi
exit 3
"""


@pytest.fixture
def fake_comfyui(tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "comfy").mkdir()
    (root / "main.py").write_text("# ComfyUI\n")
    python = root / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return root, python


def _install(*args: str) -> int:
    from fixative.hosts.cli import main

    return main(["install", "comfyui", *args])


def test_install_links_pack_and_engine_idempotently(fake_comfyui, capsys):
    root, python = fake_comfyui
    assert _install("--comfyui-dir", str(root)) == 0
    out = capsys.readouterr().out
    dest = root / "custom_nodes" / "comfyui-fixative"
    assert dest.is_symlink() and dest.resolve() == PACK.resolve()
    assert f"ComfyUI's Python: {python}" in out and "link" in out
    calls = (python.parent / "calls.log").read_text().splitlines()
    pip = [c for c in calls if c.startswith("-m pip install")]
    assert pip == [f"-m pip install -e {ROOT}"]
    assert "fixative 0.1.0 installed" in out

    assert _install("--comfyui-dir", str(root)) == 0  # again: nothing to do
    out = capsys.readouterr().out
    assert "already linked" in out and "already installed" in out
    calls = (python.parent / "calls.log").read_text().splitlines()
    assert len([c for c in calls if c.startswith("-m pip")]) == 1


def test_install_copy_and_explicit_python(fake_comfyui, tmp_path, capsys):
    root, python = fake_comfyui
    other = tmp_path / "other-python"
    other.write_text(FAKE_PYTHON)
    other.chmod(0o755)
    assert _install("--comfyui-dir", str(root), "--python", str(other), "--copy") == 0
    dest = root / "custom_nodes" / "comfyui-fixative"
    assert dest.is_dir() and not dest.is_symlink()
    assert (dest / "nodes.py").read_bytes() == (PACK / "nodes.py").read_bytes()
    assert not list(dest.rglob("__pycache__"))
    assert f"-m pip install {ROOT}" in (tmp_path / "calls.log").read_text()
    assert not (python.parent / "calls.log").exists()  # the venv beside ComfyUI was not touched
    assert _install("--comfyui-dir", str(root), "--python", str(other), "--link") == 0  # copy -> link
    assert dest.is_symlink()
    capsys.readouterr()


def test_install_dry_run_changes_nothing(fake_comfyui, capsys):
    root, python = fake_comfyui
    assert _install("--comfyui-dir", str(root), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would link" in out and "would run" in out and "nothing was changed" in out
    assert not (root / "custom_nodes" / "comfyui-fixative").exists()
    assert "pip" not in (python.parent / "calls.log").read_text()


def test_install_refuses_strangers_and_non_comfyui(fake_comfyui, tmp_path, capsys):
    root, _ = fake_comfyui
    stranger = root / "custom_nodes" / "comfyui-fixative"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    assert _install("--comfyui-dir", str(root), "--skip-engine") == 2
    assert (stranger / "keep.txt").read_text() == "mine"
    assert _install("--comfyui-dir", str(tmp_path / "nowhere")) == 2
    (tmp_path / "empty").mkdir()
    assert _install("--comfyui-dir", str(tmp_path / "empty")) == 2
    err = capsys.readouterr().err
    assert "not the Fixative node pack" in err and "does not look like ComfyUI" in err
    assert all(line.startswith("fixative: error:") for line in err.strip().splitlines())


def test_install_without_a_findable_python(tmp_path, capsys):
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "main.py").write_text("")
    assert _install("--comfyui-dir", str(root)) == 2
    assert "--python" in capsys.readouterr().err
    assert not os.path.lexists(root / "custom_nodes" / "comfyui-fixative")


def test_widgets_come_from_the_options_schema(pack):
    from fixative.options import COMFYUI, ProtectOptions, offered_to

    required, optional = pack.nodes.schema_inputs()
    assert set(required) | set(optional) == set(offered_to(COMFYUI, ProtectOptions))
    assert required["method"][0] == ["style", "concept", "edit"]
    assert optional["steps"][0] == "INT" and optional["steps"][1]["min"] == 0  # 0: as the preset
    inputs = pack.NODE_CLASS_MAPPINGS["FixativeProtectImage"].INPUT_TYPES()
    assert set(required) <= set(inputs["required"]) and set(optional) <= set(inputs["optional"])
