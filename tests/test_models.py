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
    enc = load_encoders([str(path)])[0]
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
    entry = resolve(str(file))
    assert entry.family == "taef2" and entry.decoder == str(file)
    enc = load_encoders([entry], cache=None)[0]
    x = _image(small_artwork, 64)
    with torch.no_grad():
        assert torch.allclose(enc(x), taef2(x), atol=1e-5)
        assert torch.allclose(enc.decode(taef2(x)), taef2.decode(taef2(x)), atol=1e-5)


def test_autoencoder_kl_folder_and_single_file(tiny_kl, tmp_path):
    folder, model = tiny_kl
    x = torch.rand(1, 3, 64, 64)
    expected = (model.encode(x * 2 - 1).latent_dist.mean - 0.0) * model.config.scaling_factor
    enc = load_encoders([str(folder)], cache=None)[0]
    assert enc.family == "sd" and enc.latent_channels == 4 and enc.downscale == 2
    with torch.no_grad():
        assert torch.allclose(enc(x), expected, atol=1e-5)
    file = tmp_path / "tiny_vae.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    single = load_encoders([str(file)], cache=None)[0]
    with torch.no_grad():
        assert torch.allclose(single(x), expected, atol=1e-5)
        assert single.decode(single(x)).shape == x.shape


def test_sixteen_channel_kl_gets_sd3_or_flux_scaling(tmp_path):
    from diffusers import AutoencoderKL

    from .conftest import tiny_kl_config

    model = AutoencoderKL(**tiny_kl_config(16), use_quant_conv=False, use_post_quant_conv=False)
    file = tmp_path / "flux_ae.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    entry = AutoencoderKLFamily().probe(file)
    assert entry.family == "flux" and entry.latent_channels == 16
    enc = load_encoders([entry], cache=None)[0]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        mean = model.encoder(x * 2 - 1)[:, :16]
        assert torch.allclose(enc(x), (mean - 0.1159) * 0.3611, atol=1e-5)


def test_ensemble_loads_several(taef2_path, tiny_kl):
    folder, _ = tiny_kl
    encs = load_encoders([str(taef2_path), str(folder)], cache=None)
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
    found = find_models()
    assert [(e.family, e.latent_channels) for e in found] == [("taef2", 32)]
    assert found[0].decoder.endswith("taef2_decoder.pth")
    assert resolve("taef2").source == found[0].source
    monkeypatch.setenv("FIXATIVE_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="no image encoder found"):
        load_encoders(None, cache=None)


def test_bad_model_files_get_clear_errors(tmp_path, taef2_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelNotFoundError, match="not an image encoder"):
        resolve(str(junk))
    other = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ModelNotFoundError, match="not an image encoder"):
        resolve(str(other))
    with pytest.raises(ModelNotFoundError, match="decoder"):
        resolve(str(taef2_path.with_name("taef2_decoder.pth")))
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve(str(Path("no-such-model")))


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil_encoder.pth"
    torch.save({"0.weight": Evil()}, bad)
    with pytest.raises(ModelNotFoundError):
        resolve(str(bad))
