"""Shared fixtures: real data from ../shared (never copied into the repo), tiny random diffusers models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FIXATIVE_SHARED", ROOT.parent / "shared"))
TAESD_DIR = SHARED / "models" / "taesd"
DEFAULT_EPS_255 = 12  # the default intensity's hard L-inf cap, in 0..255 steps (see fixative.presets)
IMAGES = SHARED / "images"

SCRATCH = ROOT / ".test-scratch"  # what the tests write stays inside the checkout (git ignores it)

os.environ.setdefault("FIXATIVE_MODELS", str(SHARED / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """pytest's tmp_path folders and Python's temporary files (the engine's job folders) under SCRATCH,
    not /tmp, unless ``--basetemp`` says otherwise."""
    if config.option.basetemp is None:
        config.option.basetemp = str(SCRATCH / "pytest")
    (SCRATCH / "tmp").mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(SCRATCH / "tmp")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def taef2_path() -> Path:
    return _need(TAESD_DIR / "taef2_encoder.pth")


@pytest.fixture(scope="session")
def taef2(taef2_path):
    from fixative.models import load_encoders
    from fixative.plugins import hooks

    return load_encoders([str(taef2_path)], hooks(), device="cpu")[0]


@pytest.fixture(scope="session")
def artwork_path() -> Path:
    return _need(IMAGES / "hokusai_great_wave.jpg")


@pytest.fixture(scope="session")
def small_artwork(artwork_path):
    """The Great Wave at 256 px on its long side, as a PIL image."""
    from PIL import Image

    image = Image.open(artwork_path).convert("RGB")
    image.thumbnail((256, 256))
    return image


@pytest.fixture(scope="session")
def anchor_path() -> Path:
    return _need(IMAGES / "photo_chelsea.png")


def tiny_kl_config(latent_channels: int = 4) -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[32, 32],
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=32,
        sample_size=32,
    )


@pytest.fixture
def tiny_kl(tmp_path):
    """A tiny random diffusers AutoencoderKL saved as a diffusers folder; returns (folder, model)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    model = AutoencoderKL(**tiny_kl_config())
    folder = tmp_path / "tiny-vae"
    model.save_pretrained(folder)
    return folder, model


def tiny_text_stack(folder: Path):
    """A tiny random CLIP tokenizer and text encoder for tiny diffusers pipelines (nothing downloaded)."""
    import json

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars = [chr(b) for b in printable] + [
        chr(256 + i) for i in range(256 - len(printable))
    ]  # GPT-2 byte map
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tok_dir = folder / "tok"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=16)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=16,
        bos_token_id=len(vocab) - 2,
        eos_token_id=len(vocab) - 1,
        pad_token_id=len(vocab) - 1,
    )
    return tokenizer, CLIPTextModel(config)
