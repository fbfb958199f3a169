"""Train the start bank: one universal perturbation per target kind for one encoder family.

    python -m training.start_bank                      # taef2, the edit patterns (~11 min on 2 cores)
    python -m training.start_bank --keys edit:grey --steps 20 --out /tmp/bank.safetensors   # a try-out

Each step draws random crops of the *training* artworks, makes each crop's target with Fixative's own
target makers, and moves the shared pattern (budget units, tiled from the crop's corner) with Adam so that
the encoder's features of every crop move toward its target, inside the crop's own perceptual budget.
The artworks it is then measured on (``--held-out``) are never seen: the bank's metadata names both sets
and the held-out strength beside matched noise (the same per-pixel |change| with random signs).

Seeded (crops, order and start); writes ``core/fixative/optimise/banks/<family>.safetensors``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# The twelve shared artworks split in two: the bank learns from eight and is measured on four (the
# benchmarks' Great Wave and Mucha's Reverie among them).
TRAIN_IMAGES = [
    "kandinsky_composition_vii.jpg",
    "mondrian_composition_1913.jpg",
    "monet_water_lilies_1919.jpg",
    "mucha_biscuits_champagne.jpg",
    "picabia_edtaonisl.jpg",
    "turner_shipwreck_minotaur.jpg",
    "photo_astronaut.png",
    "photo_rocket.jpg",
]
HELD_OUT = ["hokusai_great_wave.jpg", "mucha_reverie.jpg", "vangogh_starry_night.jpg", "photo_chelsea.png"]
# The edit shield's fixed patterns: there a universal start measurably helps (docs/speed.md, "Start
# bank"). The built-in style kinds can be trained too (``--keys style:charcoal,...``), but their targets
# follow each artwork: the patterns reached 0.06-0.15 on unseen artworks and made the race slower.
KEYS = ["edit:grey", "edit:pattern"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.start_bank", description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default=str(SHARED / "models" / "taesd" / "taef2_encoder.pth"))
    p.add_argument("--images", default=str(SHARED / "images"), help="folder of the artworks")
    p.add_argument("--train", default=",".join(TRAIN_IMAGES), help="training artworks, comma-separated")
    p.add_argument("--held-out", default=",".join(HELD_OUT), help="artworks it is measured on")
    p.add_argument("--keys", default=",".join(KEYS), help="target kinds (style:<name>, edit:<pattern>)")
    p.add_argument("--size", type=int, default=512, help="artworks are fitted to size x size first")
    p.add_argument("--crop", type=int, default=128, help="training crop side")
    p.add_argument("--period", type=int, default=64, help="pattern side (it is tiled)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4, help="crops per step")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--jnd-scale", type=float, default=1.0, help="budget of training (the default intensity)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default: core/fixative/optimise/banks/<family>.safetensors")
    return p.parse_args(argv)


def _names(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def check_inputs(args: argparse.Namespace) -> None:
    """One line and exit 2 for settings that cannot train (before any model is loaded)."""
    from fixative.targets.patterns import PATTERNS
    from fixative.targets.styles import STYLES

    known = [f"style:{name}" for name in STYLES] + [f"edit:{name}" for name in PATTERNS]
    unknown = [key for key in _names(args.keys) if key not in known]
    problems = [f"unknown kind {key!r} (choose from {', '.join(known)})" for key in unknown]
    for name in ("steps", "batch", "crop", "period", "size"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be at least 1")
    if args.crop > args.size:
        problems.append(f"--crop {args.crop} is larger than --size {args.size}")
    if not _names(args.keys) or not _names(args.train) or not _names(args.held_out):
        problems.append("--keys, --train and --held-out each need at least one name")
    if set(_names(args.train)) & set(_names(args.held_out)):
        overlap = sorted(set(_names(args.train)) & set(_names(args.held_out)))
        problems.append(f"training and held-out artworks overlap: {overlap}")
    if problems:
        raise SystemExit(f"python -m training.start_bank: {problems[0]}")


def load_artworks(folder: str, names: list[str], size: int) -> list[torch.Tensor]:
    from fixative.load import load_image
    from fixative.targets import fit_to

    return [(fit_to(load_image(str(Path(folder) / n)).rgb, size, size) * 255).round() / 255 for n in names]


def make_target_image(key: str, crop: torch.Tensor) -> torch.Tensor:
    """The crop's target, made by the same makers ``protect`` uses."""
    from fixative.plugins import hooks
    from fixative.targets import TargetRequest, make_target

    method, name = key.split(":", 1)
    request = TargetRequest(method=method, artwork=crop, **({"style": name} if method == "style" else {}))
    if method == "edit":
        request.pattern = name
    target = make_target(request, hooks())
    if target.image is None:
        raise SystemExit(f"{key}: the target is not an image; a bank cannot hold it")
    return target.image


class Crops:
    """Random crops aligned to the latent grid (multiples of 16), with their budgets and target features."""

    def __init__(self, artworks, encoder, key: str, crop: int, jnd_scale: float, seed: str) -> None:
        self.artworks, self.encoder, self.key, self.crop, self.jnd = artworks, encoder, key, crop, jnd_scale
        self.rng = random.Random(seed)

    def draw(self):
        from fixative.optimise import perceptual_budget

        art = self.artworks[self.rng.randrange(len(self.artworks))]
        h, w = art.shape[-2:]
        top = self.rng.randrange(0, (h - self.crop) // 16 + 1) * 16
        left = self.rng.randrange(0, (w - self.crop) // 16 + 1) * 16
        x = art[:, top : top + self.crop, left : left + self.crop].contiguous()
        budget = perceptual_budget(x, self.jnd, 12 / 255)
        with torch.no_grad():
            target = self.encoder(make_target_image(self.key, x)[None])
            start = float((self.encoder(x[None]) - target).pow(2).sum())
        return x[None], budget, target, max(start, 1e-12)


def train_pattern(crops: Crops, period: int, steps: int, batch: int, lr: float, log) -> torch.Tensor:
    from fixative.optimise.start import universal_delta

    pattern = torch.zeros(3, period, period, requires_grad=True)
    adam = torch.optim.Adam([pattern], lr=lr)
    started = time.perf_counter()
    for step in range(steps):
        loss = torch.zeros(())
        for _ in range(batch):
            x, budget, target, start = crops.draw()
            loss = (
                loss + (crops.encoder(x + universal_delta(pattern, x, budget)) - target).pow(2).sum() / start
            )
        adam.zero_grad()
        (loss / batch).backward()
        adam.step()
        with torch.no_grad():
            pattern.clamp_(-1, 1)
        if step % 25 == 0 or step == steps - 1:
            seconds = time.perf_counter() - started
            log(f"  step {step}: training strength {1 - float(loss.detach()) / batch:.3f} ({seconds:.0f} s)")
    return pattern.detach()


@torch.no_grad()
def held_out_strength(pattern, encoder, key: str, artworks, jnd_scale: float, seed: int) -> dict:
    """Strength of the pattern alone on whole unseen artworks, beside matched noise."""
    from fixative.optimise import perceptual_budget
    from fixative.optimise.start import universal_delta

    g = torch.Generator().manual_seed(seed)
    bank, noise = [], []
    for art in artworks:
        x = art[None]
        budget = perceptual_budget(art, jnd_scale, 12 / 255)
        target = encoder(make_target_image(key, art)[None])
        start = float((encoder(x) - target).pow(2).sum())
        delta = universal_delta(pattern, x, budget)
        signs = torch.randint(0, 2, delta.shape, generator=g) * 2 - 1
        matched = ((x + delta.abs() * signs).clamp(0, 1) - x).float()
        bank.append(1 - float((encoder(x + delta) - target).pow(2).sum()) / start)
        noise.append(1 - float((encoder(x + matched) - target).pow(2).sum()) / start)
    return {"bank": [round(v, 4) for v in bank], "noise": [round(v, 4) for v in noise]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_inputs(args)
    from fixative.errors import FixativeError
    from fixative.models import load_encoders
    from fixative.optimise.start import BANKS, StartBank, save_bank
    from fixative.plugins import hooks

    torch.manual_seed(args.seed)
    train, held_out = _names(args.train), _names(args.held_out)
    try:
        encoder = load_encoders([args.encoder], hooks(), device="cpu")[0]
        artworks = load_artworks(args.images, train, args.size)
        unseen = load_artworks(args.images, held_out, args.size)
    except FixativeError as exc:
        raise SystemExit(f"python -m training.start_bank: {exc}") from None
    log = functools.partial(print, flush=True)
    patterns, measured = {}, {}
    for key in _names(args.keys):
        print(f"{key}: {args.steps} steps of {args.batch} crops of {args.crop}²", flush=True)
        crops = Crops(artworks, encoder, key, args.crop, args.jnd_scale, f"{args.seed}:{key}")
        patterns[key] = train_pattern(crops, args.period, args.steps, args.batch, args.lr, log)
        measured[key] = held_out_strength(patterns[key], encoder, key, unseen, args.jnd_scale, args.seed)
        print(f"  held out {held_out}: {measured[key]}", flush=True)
    metadata = {
        "encoder": Path(args.encoder).name,
        "train_images": json.dumps(train),
        "held_out": json.dumps(held_out),
        "held_out_strength": json.dumps(measured),
        "settings": json.dumps(
            {
                k: getattr(args, k)
                for k in ("size", "crop", "period", "steps", "batch", "lr", "jnd_scale", "seed")
            }
        ),
        "trained": datetime.date.today().isoformat(),
        "command": "python -m training.start_bank " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(args.out) if args.out else BANKS / f"{encoder.family}.safetensors"
    save_bank(StartBank(encoder.family, patterns, metadata), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
