"""Encoders: real TAESD-family weights loaded strictly, diffusers AutoencoderKL paths, discovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fixative.errors import ModelNotFoundError
from fixative.models import find_models, load_encoders, resolve
from fixative.models.autoencoder_kl import AutoencoderKLFamily
from fixative.plugins import hooks

from .conftest import TAESD_DIR


def _image(small_artwork, size=128) -> torch.Tensor:
    im = small_artwork.resize((size, size))
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255


def test_taef2_loads_strictly_and_reconstructs(taef2, small_artwork):
    assert taef2.family == "taef2" and taef2.latent_channels == 32 and taef2.has_decoder
    x = _image(small_artwork)
    with torch.no_grad():
        z = taef2(x)
        back = taef2.decode(z)
    assert z.shape == (1, 32, 16, 16)
    assert float((back - x).abs().mean()) < 0.08  # a real autoencoder, not random weights


def test_taesana_is_a_32x_encoder(small_artwork):
    path = TAESD_DIR / "taesana_encoder.pth"
    if not path.exists():
        pytest.skip("taesana not present")
    enc = load_encoders([str(path)], hooks())[0]
    with torch.no_grad():
        z = enc(_image(small_artwork))
    assert enc.downscale == 32 and z.shape == (1, 32, 4, 4)


def test_tiny_safetensors_in_diffusers_layout_loads_identically(taef2, tmp_path, small_artwork):
    state = {f"encoder.layers.{k}": v.contiguous() for k, v in taef2.encoder.state_dict().items()}
    state.update(
        {
            f"decoder.layers.{int(k.split('.')[0]) - 1}.{k.split('.', 1)[1]}": v.contiguous()
            for k, v in taef2.decoder.state_dict().items()
        }
    )
    file = tmp_path / "taef2.safetensors"
    save_file(state, str(file))
    entry = resolve(str(file), hooks())
    assert entry.family == "taef2" and entry.decoder == str(file)
    enc = load_encoders([entry], hooks(), cache=None)[0]
    x = _image(small_artwork, 64)
    with torch.no_grad():
        assert torch.allclose(enc(x), taef2(x), atol=1e-5)
        assert torch.allclose(enc.decode(taef2(x)), taef2.decode(taef2(x)), atol=1e-5)


def test_autoencoder_kl_folder_and_single_file(tiny_kl, tmp_path):
    folder, model = tiny_kl
    x = torch.rand(1, 3, 64, 64)
    expected = (model.encode(x * 2 - 1).latent_dist.mean - 0.0) * model.config.scaling_factor
    enc = load_encoders([str(folder)], hooks(), cache=None)[0]
    assert enc.family == "sd" and enc.latent_channels == 4 and enc.downscale == 2
    with torch.no_grad():
        assert torch.allclose(enc(x), expected, atol=1e-5)
    file = tmp_path / "tiny_vae.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    single = load_encoders([str(file)], hooks(), cache=None)[0]
    with torch.no_grad():
        assert torch.allclose(single(x), expected, atol=1e-5)
        assert single.decode(single(x)).shape == x.shape


def test_sixteen_channel_kl_gets_sd3_or_flux_scaling(tmp_path):
    from diffusers import AutoencoderKL

    from .conftest import tiny_kl_config

    model = AutoencoderKL(**tiny_kl_config(16), use_quant_conv=False, use_post_quant_conv=False)
    file = tmp_path / "flux_ae.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    entry = AutoencoderKLFamily().fixative_probe_model(file)
    assert entry.family == "flux" and entry.latent_channels == 16
    enc = load_encoders([entry], hooks(), cache=None)[0]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        mean = model.encoder(x * 2 - 1)[:, :16]
        assert torch.allclose(enc(x), (mean - 0.1159) * 0.3611, atol=1e-5)


def test_ensemble_loads_several(taef2_path, tiny_kl):
    folder, _ = tiny_kl
    encs = load_encoders([str(taef2_path), str(folder)], hooks(), cache=None)
    # each in the layout that runs fastest on a CPU: taef2 channels-last (its forward 0.63 -> 0.42 s at
    # 512² in bf16), the AutoencoderKL as loaded (GroupNorm and attention gained nothing)
    layouts = [
        all(p.is_contiguous(memory_format=torch.channels_last) for p in e.parameters() if p.ndim == 4)
        for e in encs
    ]
    assert layouts == [True, False]
    assert [e.family for e in encs] == ["taef2", "sd"]


def test_discovery_lists_models_and_explains_when_none(monkeypatch, tmp_path, taef2_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "taef2_encoder.pth").symlink_to(taef2_path)
    (models / "taef2_decoder.pth").symlink_to(taef2_path.with_name("taef2_decoder.pth"))
    (models / "notes.txt").write_text("not a model")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("FIXATIVE_MODELS", str(models))
    found = find_models(hooks())
    assert [(e.family, e.latent_channels) for e in found] == [("taef2", 32)]
    assert found[0].decoder.endswith("taef2_decoder.pth")
    assert resolve("taef2", hooks()).source == found[0].source
    monkeypatch.setenv("FIXATIVE_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="no image encoder found"):
        load_encoders(None, hooks(), cache=None)


def test_bad_model_files_get_clear_errors(tmp_path, taef2_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelNotFoundError, match="not an image encoder"):
        resolve(str(junk), hooks())
    other = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ModelNotFoundError, match="not an image encoder"):
        resolve(str(other), hooks())
    with pytest.raises(ModelNotFoundError, match="decoder"):
        resolve(str(taef2_path.with_name("taef2_decoder.pth")), hooks())
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve(str(Path("no-such-model")), hooks())


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil_encoder.pth"
    torch.save({"0.weight": Evil()}, bad)
    with pytest.raises(ModelNotFoundError):
        resolve(str(bad), hooks())


def _to_ldm(state: dict[str, torch.Tensor], n_blocks: int) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys -> original LDM keys (what a full SD checkpoint holds)."""
    import re

    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)", r"encoder.down.\1.block.\2", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", new)
        new = re.sub(r"\.mid_block\.resnets\.(\d+)", lambda m: f".mid.block_{int(m[1]) + 1}", new)
        if m := re.match(r"decoder\.up_blocks\.(\d+)\.(.*)", new):
            rest = m[2].replace("resnets.", "block.").replace("upsamplers.0", "upsample")
            new = f"decoder.up.{n_blocks - 1 - int(m[1])}.{rest}"
        if m := re.match(
            r"(\w+)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(\w+)", new
        ):
            new = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            if m[3] == "weight" and value.ndim == 2:
                value = value[:, :, None, None]
        out[new] = value
    return out


def test_full_sd_checkpoint_in_ldm_layout_loads_offline(tmp_path):
    """A whole SD checkpoint (first_stage_model.* beside the UNet) converts offline, encodes identically."""
    from diffusers import AutoencoderKL

    from .conftest import tiny_kl_config

    torch.manual_seed(1)
    model = AutoencoderKL(**tiny_kl_config())
    ldm = {f"first_stage_model.{k}": v.contiguous() for k, v in _to_ldm(model.state_dict(), 2).items()}
    ldm["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4, 4, 3, 3)
    file = tmp_path / "v1-5-tiny.safetensors"
    save_file(ldm, str(file))
    entry = resolve(str(file), hooks())
    assert entry.family == "sd" and entry.details["format"] == "ldm-file"
    enc = load_encoders([entry], hooks(), cache=None)[0]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model.encode(x * 2 - 1).latent_dist.mean * 0.18215
        assert torch.allclose(enc(x), expected, atol=1e-5)
        assert torch.allclose(
            enc.decode(enc(x)), ((model.decode(expected / 0.18215).sample + 1) / 2).clamp(0, 1), atol=1e-4
        )


def test_hub_id_resolves_from_the_local_cache_offline(tmp_path, monkeypatch, tiny_kl):
    """A hub id is found in the Hugging Face cache without network (HF_HUB_OFFLINE=1 in tests)."""
    folder, _ = tiny_kl
    snapshot = tmp_path / "hub" / "models--someone--tiny-sd" / "snapshots" / "0123abcd"
    (snapshot / "vae").mkdir(parents=True)
    for item in folder.iterdir():
        (snapshot / "vae" / item.name).write_bytes(item.read_bytes())
    (tmp_path / "hub" / "models--someone--tiny-sd" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-sd" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    entry = resolve("someone/tiny-sd", hooks())
    assert entry.kind == "kl" and entry.details["hub_id"] == "someone/tiny-sd"
    assert load_encoders([entry], hooks(), cache=None)[0].latent_channels == 4
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        resolve("someone/absent-model", hooks())


def test_encoder_only_single_file_has_no_decoder(tiny_kl, tmp_path):
    _, model = tiny_kl
    file = tmp_path / "encoder_only_vae.safetensors"
    state = {
        k: v.contiguous() for k, v in model.state_dict().items() if k.startswith(("encoder.", "quant_conv"))
    }
    save_file(state, str(file))
    enc = load_encoders([str(file)], hooks(), cache=None)[0]
    assert not enc.has_decoder  # never a randomly initialised decoder posing as "what the model sees"
    assert enc(torch.rand(1, 3, 32, 32)).shape == (1, 4, 16, 16)


def test_full_vaes_get_smaller_tiles(taef2, tiny_kl):
    folder, _ = tiny_kl
    assert taef2.tile == 512
    assert load_encoders([str(folder)], hooks(), cache=None)[0].tile == 288  # keeps a 4096² image within 4 GB
