"""Rebuild the bundled photos (`photos/` + `photos.json`) from sample photos shipped inside installed packages.

Sources are scikit-image's `skimage/data/` and matplotlib's `mpl-data/sample_data/`; only photographs whose
license (as stated in those packages' documentation) allows redistribution are used. Each output is
downscaled so its long side is at most `MAX_SIDE` and saved as JPEG (quality 90). Run:

    python -m calibration_data.build_photos
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

MAX_SIDE = 640
QUALITY = 90
HERE = Path(__file__).resolve().parent
NOTE = ("Only photographs released as public domain or CC0 are included (licenses as stated in scikit-image's "
        "data docstrings, skimage/data/_fetchers.py, or by the original source). Fewer than 16 distinct "
        "photographs qualified, so entries with a non-null crop_of are crops (crop_box = left, top, right, "
        "bottom in the original's pixels) of the named photo, not distinct photographs.")

_SK = "scikit-image sample data (skimage/data/{f}); license as stated in skimage.data.{fn}()"
_PD = "public domain"
_CC0 = "CC0 1.0"

# (output name, package, file, skimage function, license, description, crop box (l, t, r, b) or None)
SOURCES: list[tuple[str, str, str, str, str, str, tuple[int, int, int, int] | None]] = [
    ("coffee", "skimage", "coffee.png", "coffee", _CC0 + " (photographer Rachel Michetti)",
     "coffee cup on a saucer with a spoon on a wooden table", None),
    ("chelsea", "skimage", "chelsea.png", "chelsea", _CC0 + " (photographer Stefan van der Walt)",
     "a tabby cat", None),
    ("astronaut", "skimage", "astronaut.png", "astronaut", _PD + " (NASA; no known copyright restrictions)",
     "portrait of astronaut Eileen Collins with a flag", None),
    ("rocket", "skimage", "rocket.jpg", "rocket", _PD + " (SpaceX released its photos into the public domain)",
     "Falcon 9 launch of DSCOVR", None),
    ("hubble_deep_field", "skimage", "hubble_deep_field.jpg", "hubble_deep_field", _PD + " (NASA)",
     "Hubble eXtreme Deep Field: many small galaxies", None),
    ("camera", "skimage", "camera.png", "camera", _CC0 + " (photographer Lav Varshney)",
     "grayscale photo of a person with a camera on a tripod", None),
    ("text", "skimage", "text.png", "text", _PD + " (Wikipedia File:Corner.png)",
     "grayscale oblique photo of handwritten formulas on paper", None),
    ("clock_motion", "skimage", "clock_motion.png", "clock", _PD + " (photographer Stefan van der Walt)",
     "grayscale, motion-blurred wall clock", None),
    ("brick", "skimage", "brick.png", "brick", _CC0 + " (CC0Textures Bricks25)", "grayscale brick wall", None),
    ("grass", "skimage", "grass.png", "grass", _CC0 + " (DeviantArt linolafett, Grass-01)",
     "grayscale grass texture", None),
    ("gravel", "skimage", "gravel.png", "gravel", _CC0 + " (CC0Textures Gravel04)", "grayscale gravel", None),
    ("retina", "skimage", "retina.jpg", "retina", _CC0 + " (Mikael Haggstrom, Wikimedia Commons)",
     "fundus photograph of a human retina", None),
    ("cell", "skimage", "cell.png", "cell", _CC0, "grayscale quantitative phase image of a cell", None),
    ("grace_hopper", "matplotlib", "grace_hopper.jpg", "", _PD + " (official U.S. Navy portrait, a work of the "
     "U.S. federal government; matplotlib ships it without a license note)", "portrait of Rear Admiral Grace Hopper", None),
    ("hubble_crop", "skimage", "hubble_deep_field.jpg", "hubble_deep_field", _PD + " (NASA)",
     "CROP of hubble_deep_field (original pixels x 560-1000, y 0-440, full resolution)", (560, 0, 1000, 440)),
    ("retina_disc_crop", "skimage", "retina.jpg", "retina", _CC0 + " (Mikael Haggstrom, Wikimedia Commons)",
     "CROP of retina around the optic disc and vessels (original pixels x 850-1350, y 450-950)",
     (850, 450, 1350, 950)),
    ("rocket_towers_crop", "skimage", "rocket.jpg", "rocket",
     _PD + " (SpaceX released its photos into the public domain)",
     "CROP of rocket: left launch towers and pad lights (original pixels x 0-320, y 0-427)", (0, 0, 320, 427)),
]


def _source_path(package: str, filename: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data" / filename
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / filename


def _source_text(package: str, filename: str, fn: str) -> str:
    if package == "skimage":
        return _SK.format(f=filename, fn=fn)
    return f"matplotlib sample data (mpl-data/sample_data/{filename})"


def build(out_dir: Path = HERE) -> list[dict]:
    """Write every photo and the manifest `photos.json`; return the manifest entries."""
    photo_dir = out_dir / "photos"
    photo_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, package, filename, fn, license_, desc, crop in SOURCES:
        with Image.open(_source_path(package, filename), formats=["PNG", "JPEG"]) as im:
            im = im.convert("L" if im.mode in ("L", "I;16", "I") else "RGB")
            if crop is not None:
                im = im.crop(crop)
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
            out = photo_dir / f"{name}.jpg"
            im.save(out, "JPEG", quality=QUALITY, optimize=True)
            entries.append({"file": f"photos/{out.name}", "width": im.width, "height": im.height,
                            "mode": im.mode, "description": desc, "source": _source_text(package, filename, fn),
                            "license": license_, "crop_of": None if crop is None else f"photos/{Path(filename).stem}.jpg",
                            "crop_box": list(crop) if crop else None})
    manifest = {"default": "photos/coffee.jpg", "note": NOTE, "photos": entries}
    (out_dir / "photos.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return entries


if __name__ == "__main__":
    for e in build():
        print(e["file"], e["width"], e["height"], e["license"])
