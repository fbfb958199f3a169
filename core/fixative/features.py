"""Encoder features of whole images, tile by tile, and the one strength measure everything reports.

``strength = 1 - D(protected, target) / D(original, target)``, where D is the mean squared feature
distance (the quantity the optimiser minimises, as in PhotoGuard and Glaze): 0 means the features did not
move toward the target, 1 means they equal the target's; 0.5 means half the distance is gone.
The optimiser, ``check``, the report and the benchmarks all use this function, so their figures agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


@dataclass(frozen=True)
class Tile:
    top: int
    left: int
    height: int
    width: int

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        return images[..., self.top : self.top + self.height, self.left : self.left + self.width]


def _spans(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """(start, size) along one axis; starts aligned, and the last span always reaches the edge."""
    if length <= tile + overlap // 2:
        return [(0, length)]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, max(1, length - tile), stride))
    last = (length - tile) // align * align
    if starts[-1] != last:
        starts.append(last)
    return [(start, tile) for start in starts[:-1]] + [(starts[-1], length - starts[-1])]


def tiles(
    height: int, width: int, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, align: int = 16
) -> list[Tile]:
    """Overlapping tiles of at most ``tile`` px a side covering every pixel, as few along each side as
    ``tile`` needs and no longer than those need (``balanced_span``); offsets aligned so JPEG blocks and
    latents line up. The optimiser, every measurement and IMPRESS tile alike, so a report scores the tiles
    the optimiser pulled."""
    tile = max(align * 4, tile // align * align)
    return [
        Tile(top, left, h, w)
        for top, h in _spans(height, balanced_span(height, tile, overlap, align), overlap, align)
        for left, w in _spans(width, balanced_span(width, tile, overlap, align), overlap, align)
    ]


def balanced_span(length: int, tile: int, overlap: int = DEFAULT_OVERLAP, align: int = 16) -> int:
    """The shortest span (at most ``tile``) that covers ``length`` in as few overlapping spans as ``tile``.

    A 1024-px side in 512-px spans needs three; at full length they cover 2.25x the pixels of a 1024²
    image, at 384 px only 1.27x. Time grows with covered pixels, so this keeps time linear in the image's
    own pixel count (a 600² image: four 512² tiles covered 2.96x its pixels, four of 336² 1.28x).
    """
    count = len(_spans(length, tile, overlap, align))
    if count == 1:
        return tile
    span = max(align * 4, math.ceil((length + (count - 1) * overlap) / count / align) * align)
    while span < tile and len(_spans(length, span, overlap, align)) > count:  # the last span may run long
        span += align
    return min(tile, span)


def tile_weight(t: Tile, height: int, width: int, overlap: int, device: torch.device) -> torch.Tensor:
    """A (1, h, w) ramp fading toward edges shared with a neighbour, so tiles blend without seams."""

    def ramp(n: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
        w = torch.ones(n, device=device)
        k = min(overlap, n // 2)
        if k > 0:
            edge = (torch.arange(k, device=device, dtype=torch.float32) + 0.5) / k
            if fade_start:
                w[:k] = edge
            if fade_end:
                w[n - k :] = edge.flip(0)
        return w

    wy = ramp(t.height, t.top > 0, t.top + t.height < height)
    wx = ramp(t.width, t.left > 0, t.left + t.width < width)
    return (wy[:, None] * wx[None, :])[None]


def iter_features(
    encoder: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile_list: list[Tile]
) -> Iterator[torch.Tensor]:
    for t in tile_list:
        yield encoder(t.crop(images))


@torch.no_grad()
def encode(
    encoder: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: int = DEFAULT_TILE
) -> list[torch.Tensor]:
    """Features of every tile of ``images`` (B, 3, H, W), as a list in tile order."""
    return list(iter_features(encoder, images, tiles(images.shape[-2], images.shape[-1], tile)))


def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Mean squared distance between two tile-feature lists."""
    total = sum(float((x.float() - y.float()).pow(2).sum()) for x, y in zip(a, b, strict=True))
    count = sum(x.numel() for x in a)
    return total / max(count, 1)


def strength(
    protected: list[torch.Tensor], original: list[torch.Tensor], target: list[torch.Tensor]
) -> float:
    """0 = features did not move toward the target, 1 = they equal it (can go below 0 if they moved away).
    A target the original already equals gives nothing to move toward: 0, never a claim of 1."""
    start = distance(original, target)
    if start <= 1e-12:
        return 0.0
    return 1.0 - distance(protected, target) / start


def shift(moved: list[torch.Tensor], original: list[torch.Tensor]) -> float:
    """How far features moved at all, target aside: D(moved, original) / mean square of the original's
    features (0 = unchanged)."""
    scale = sum(float(x.float().pow(2).sum()) for x in original) / max(1, sum(x.numel() for x in original))
    return distance(moved, original) / max(scale, 1e-12)


@dataclass(frozen=True)
class Comparison:
    """One version of an image scored against the original (``StrengthProbe.compare``)."""

    strength: float
    distance_before: float
    distance_after: float
    decoded_share: float | None  # None when the encoder has no decoder
    shift: float  # how far its features moved from the original's at all (``shift``)


class TargetLike(Protocol):
    """What a probe needs of a target (``fixative.targets.Target``)."""

    image: torch.Tensor | None

    def features(self, encoder, original_tile: torch.Tensor, target_tile: torch.Tensor | None): ...


@dataclass
class StrengthProbe:
    """One encoder, the tiles of one image and the target's features on each: scores any version of it.

    The one strength measurement: the optimiser takes its target features and start distance from a probe,
    ``protect`` reports through one, and ``check`` scores purified copies with one.
    """

    encoder: Callable[[torch.Tensor], torch.Tensor]
    tiles: list[Tile]
    target: list[torch.Tensor]
    _target_view: list[torch.Tensor] | None = None
    goal: TargetLike | None = None  # what the target features were made from (to re-align them)
    # The original's latents and what the model sees of them, once encoded (``remember``).
    _reference: tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None] | None = None

    @classmethod
    def build(
        cls, encoder, goal: TargetLike, reference: torch.Tensor, tile: int = DEFAULT_TILE, tile_list=None
    ) -> StrengthProbe:
        """``reference`` (3, H, W) is the original (or its stand-in) the target's features are made on."""
        dev = encoder.device
        ref = reference[None].to(dev)
        tile_list = tile_list or tiles(ref.shape[-2], ref.shape[-1], tile)
        timg = None if goal.image is None else goal.image[None].to(dev)
        target = [
            goal.features(encoder, t.crop(ref), None if timg is None else t.crop(timg)) for t in tile_list
        ]
        return cls(encoder, tile_list, target, goal=goal)

    def realigned(
        self, move: Callable[[torch.Tensor], torch.Tensor], moved_reference: torch.Tensor
    ) -> StrengthProbe:
        """The same target seen through a purification that moves pixels (crop and resize): the target
        image goes through ``move`` too and a latent-transform target is rebuilt on ``moved_reference``
        (the equally moved original), so what is scored is the protection, not the misalignment."""
        if self.goal is None:
            raise ValueError("this probe was not built from a target, so it cannot be re-aligned")
        goal = self.goal
        if goal.image is not None:
            goal = dataclasses.replace(goal, image=move(goal.image))
        reference = moved_reference if moved_reference.ndim == 3 else moved_reference[0]
        covered = (max(t.top + t.height for t in self.tiles), max(t.left + t.width for t in self.tiles))
        same_size = covered == tuple(reference.shape[-2:])  # a resized copy gets tiles of its own
        return StrengthProbe.build(self.encoder, goal, reference, tile_list=self.tiles if same_size else None)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images if images.ndim == 4 else images[None]).to(self.encoder.device)
        return [self.encoder(t.crop(x)) for t in self.tiles]

    def distance(self, images: torch.Tensor) -> float:
        """Mean squared feature distance of ``images`` to the target."""
        return distance(self.features(images), self.target)

    def squared_sum(self, images: torch.Tensor) -> float:
        """Summed squared distance (the optimiser's normaliser: what the loss starts from)."""
        feats = self.features(images)
        return sum(float((f - t).pow(2).sum()) for f, t in zip(feats, self.target, strict=True))

    def strength(self, protected: torch.Tensor, original: torch.Tensor) -> tuple[float, float, float]:
        """(strength, distance before, distance after) of ``protected`` against ``original``."""
        p, o = self.features(protected), self._of_reference(original, seen=False)[0]
        return strength(p, o, self.target), distance(o, self.target), distance(p, self.target)

    @property
    def sees(self) -> bool:
        """Whether the encoder has a decoder, so what the model sees can be measured."""
        return bool(getattr(self.encoder, "has_decoder", False))

    @torch.no_grad()
    def pictures(self, latents: list[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder's picture of each tile's latents, kept in the encoder's own precision: all the
        decoder's output carries (a bf16 encoder's take half the memory; 127 MB per image at 4096²)."""
        keep = getattr(self.encoder, "dtype", torch.float32)
        return [self.encoder.decode(z).to(keep) for z in latents]

    def view(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What the model sees of each tile: the decoder's picture of its latents."""
        return self.pictures(self.features(images))

    def target_view(self) -> list[torch.Tensor]:
        if self._target_view is None:
            self._target_view = self.pictures(self.target)
        return self._target_view

    def remember(
        self, reference: torch.Tensor, latents: list[torch.Tensor], pictures: list[torch.Tensor] | None
    ) -> None:
        """Keep ``reference``'s latents (and what the model sees of them) for ``compare``: the optimiser
        encodes the original for its starting distances, and the report scores against that same original
        (two passes over the tiles fewer; only where memory allows, ``optimise.loop.prepare``)."""
        self._reference = (reference, latents, pictures)

    @property
    def remembers(self) -> bool:
        """Whether the original's latents are kept (``remember``)."""
        return self._reference is not None

    def _of_reference(
        self, original: torch.Tensor, seen: bool = True
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """The original's latents and (``seen``) pictures: remembered when it is the very image, else
        encoded."""
        kept = self._reference
        x = (original if original.ndim == 4 else original[None]).to(self.encoder.device)
        if kept is not None and kept[0].shape == x.shape and torch.equal(kept[0], x):
            latents, pictures = kept[1], kept[2]
        else:
            latents, pictures = self.features(x), None
        if pictures is None and seen and self.sees:
            pictures = self.pictures(latents)
        return latents, pictures

    @torch.no_grad()
    def compare(self, original: torch.Tensor, *versions: torch.Tensor) -> list[Comparison]:
        """``strength`` and ``decoded_share`` of each version against ``original``, with the original
        encoded and decoded once (a report scores the protected file and its matched noise), or not at
        all when the probe remembers it."""
        o, o_view = self._of_reference(original)
        out = []
        for version in versions:
            f = self.features(version)
            share = None
            if o_view is not None:
                share = strength(self.pictures(f), o_view, self.target_view())
            before, after = distance(o, self.target), distance(f, self.target)
            out.append(Comparison(strength(f, o, self.target), before, after, share, shift(f, o)))
        return out

    def decoded_share(self, protected: torch.Tensor, original: torch.Tensor) -> float | None:
        """How far what the model sees moved toward the target's picture:
        ``1 - MSE(dec(E(p)), dec(z_t)) / MSE(dec(E(o)), dec(z_t))`` (None without a decoder)."""
        if not self.sees:
            return None
        return strength(self.view(protected), self.view(original), self.target_view())
