"""Photos stored sideways: what a protection is worth once the picture is turned upright.

    python -m bench.orientation                        # two photos, style and edit, 320 × 256 (~1 min)
    python -m bench.orientation --images photo_rocket.jpg --methods edit

Phones store pixels as the sensor read them and an EXIF orientation tag saying how to turn them; sites
re-encode uploads upright and training loaders apply the tag, so what a model sees is the upright picture.
Each photo is stored turned (orientation 6) and protected two ways, both measured upright with the exact
check (the upright original beside it, the quick cleaners, taef2):

- **stored pixels**: the tag stripped before protecting, i.e. the protection made on the pixels as stored
  (what Fixative did before it applied the tag);
- **as displayed**: the tagged file given to ``fixative.protect`` as it is (today: turned upright first).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .visibility import RESULTS, SHARED, write_latest


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.orientation", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="photo_astronaut.png,photo_chelsea.png")
    p.add_argument("--methods", default="style,edit")
    p.add_argument("--size", default="320x256", help="WxH of the upright picture (a centre crop, resized)")
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from PIL import Image, ImageOps

    import fixative

    width, height = (int(v) for v in args.size.lower().split("x"))
    model = str(SHARED / "models" / "taesd" / "taef2_encoder.pth")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fixative-orientation-") as scratch:
        folder = Path(scratch)
        for name in [v for v in args.images.split(",") if v]:
            with Image.open(SHARED / "images" / name) as file:
                shown = ImageOps.fit(file.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
            upright = folder / "upright.png"
            shown.save(upright)
            exif = Image.Exif()
            exif[0x0112] = 6  # display = the stored pixels turned 90° clockwise
            tagged, untagged = folder / "tagged.png", folder / "untagged.png"
            stored = shown.transpose(Image.Transpose.ROTATE_90)
            stored.save(tagged, exif=exif.tobytes())
            stored.save(untagged)
            assert ImageOps.exif_transpose(Image.open(tagged)).tobytes() == shown.tobytes()
            for method in [m for m in args.methods.split(",") if m]:
                row = {"image": name, "size": f"{width}x{height}", "method": method}
                for way, source in (("stored pixels", untagged), ("as displayed", tagged)):
                    result = fixative.protect(source, method, models=[model])
                    out = result.save(folder / "protected.png", overwrite=True)
                    picture = ImageOps.exif_transpose(Image.open(out))
                    if way == "stored pixels":
                        picture = picture.transpose(Image.Transpose.ROTATE_270)  # what a viewer shows
                    seen = folder / "seen.png"
                    picture.save(seen, pnginfo=_text_of(Image.open(out)))
                    checked = fixative.check(
                        seen, original=upright, models=[model], fast=True, transfer=False
                    )
                    row[way] = {
                        "reported": result.report.strength,
                        "upright": checked.strength,
                        "verdict": checked.verdict,
                    }
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_latest(args.out, "orientation", rows, markdown(rows))
    return 0


def _text_of(image):
    """The file's PNG text chunks (Fixative's metadata), so ``check`` can rebuild the target."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in getattr(image, "text", {}).items():
        info.add_text(key, value)
    return info


def markdown(rows: list[dict]) -> str:
    lines = [
        "| image | size | method | stored pixels: reported | upright | verdict upright "
        "| as displayed: reported | upright | verdict upright |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["stored pixels"], r["as displayed"]
        lines.append(
            f"| {r['image']} | {r['size']} | {r['method']} | {a['reported']:.3f} | {a['upright']:.3f} | "
            f"{a['verdict']} | {b['reported']:.3f} | {b['upright']:.3f} | {b['verdict']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
