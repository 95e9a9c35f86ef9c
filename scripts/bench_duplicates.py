"""Near-duplicate detection: cnncodes against imagededup's perceptual hashes on a generated benchmark.

From real photos in ../shared/data/hymenoptera, a temporary folder gets, for each of
``--families`` originals (val split), the original and seven copies: the same bytes, a
JPEG re-encode at quality 20, a resize to half size, a centre crop of 80% and an off-centre
crop of 85% of each side, brightness +40%, and a 5 degree rotation. ``--distractors`` other
photos (train split) join unchanged. Ground truth: two files are duplicates when they come
from the same original. Scored as pairs (precision, recall, F1) for
``cnncodes.find_duplicates`` at several thresholds and, in the same run, for imagededup's
PHash, DHash and WHash at their default Hamming distance (10) and at their best one.
Prints Markdown tables; the last line is a JSON object of every figure.

Run: python scripts/bench_duplicates.py [--families 80] [--distractors 200] [--cache DIR]
Needs: pip install imagededup (the 'bench' extra); it runs offline.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageEnhance

import cnncodes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)
HASH_DISTANCES = tuple(range(0, 21, 2))


def _crop(image: Image.Image, fraction: float, centre: bool) -> Image.Image:
    width, height = image.size
    w, h = int(width * fraction), int(height * fraction)
    left, top = ((width - w) // 2, (height - h) // 2) if centre else (0, 0)
    return image.crop((left, top, left + w, top + h))


TRANSFORMS = {
    "jpeg20": lambda im: (im, {"quality": 20}),
    "half": lambda im: (im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), {}),
    "crop80": lambda im: (_crop(im, 0.8, centre=True), {}),
    "crop85_corner": lambda im: (_crop(im, 0.85, centre=False), {}),
    "bright140": lambda im: (ImageEnhance.Brightness(im).enhance(1.4), {}),
    "rotate5": lambda im: (im.rotate(5, resample=Image.Resampling.BICUBIC), {}),
}


def generate(folder: Path, n_families: int, n_distractors: int) -> dict[str, int]:
    """Write the benchmark images; return file name -> family (distractors: their own family)."""
    originals = sorted((SHARED / "hymenoptera" / "val").rglob("*.jpg"))[:n_families]
    distractors = sorted((SHARED / "hymenoptera" / "train").rglob("*.jpg"))[:n_distractors]
    family_of: dict[str, int] = {}
    for family, source in enumerate(originals):
        shutil.copyfile(source, folder / f"f{family:03d}_original.jpg")
        shutil.copyfile(source, folder / f"f{family:03d}_copy.jpg")
        image = Image.open(source).convert("RGB")
        for kind, transform in TRANSFORMS.items():
            changed, save_options = transform(image)
            changed.save(folder / f"f{family:03d}_{kind}.jpg", quality=save_options.get("quality", 90))
        family_of.update({p.name: family for p in folder.glob(f"f{family:03d}_*.jpg")})
    for i, source in enumerate(distractors):
        shutil.copyfile(source, folder / f"d{i:03d}.jpg")
        family_of[f"d{i:03d}.jpg"] = len(originals) + i
    return family_of


def true_pairs(family_of: dict[str, int]) -> set[tuple[str, str]]:
    names = sorted(family_of)
    return {(a, b) for a, b in itertools.combinations(names, 2) if family_of[a] == family_of[b]}


def score(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, float]:
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "pairs": len(found)}


def recall_by_copy(found: set[tuple[str, str]], n_families: int) -> dict[str, float]:
    """For each kind of copy, the fraction of originals whose pair with that copy was found."""
    kinds = ["copy", *TRANSFORMS]
    return {
        kind: sum(tuple(sorted((f"f{i:03d}_original.jpg", f"f{i:03d}_{kind}.jpg"))) in found for i in range(n_families))
        / n_families
        for kind in kinds
    }


def cnncodes_pairs(folder: Path, threshold: float, cache: Path) -> set[tuple[str, str]]:
    groups = cnncodes.find_duplicates(folder, threshold=threshold, cache=cache, progress=False).groups
    names = [[Path(p).name for p in group] for group in groups]
    return {tuple(sorted(pair)) for group in names for pair in itertools.combinations(group, 2)}


def hash_pairs(encodings: dict[str, str], method: object, distance: int) -> set[tuple[str, str]]:
    duplicates = method.find_duplicates(encoding_map=encodings, max_distance_threshold=distance)
    return {tuple(sorted((a, b))) for a, others in duplicates.items() for b in others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=80)
    parser.add_argument("--distractors", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=None, help="code cache folder (default: a temporary one)")
    args = parser.parse_args()
    from imagededup.methods import DHash, PHash, WHash  # the peer: imported only by the benchmark

    work = Path(tempfile.mkdtemp(prefix="cnncodes-bench-dup-"))
    try:
        folder = work / "images"
        folder.mkdir()
        family_of = generate(folder, args.families, args.distractors)
        truth = true_pairs(family_of)
        cache = args.cache or work / "cache"
        figures: dict[str, object] = {"images": len(family_of), "true_pairs": len(truth)}
        start = time.monotonic()
        rows = {f"cnncodes {t:.2f}": score(cnncodes_pairs(folder, t, cache), truth) for t in THRESHOLDS}
        figures["cnncodes_seconds"] = time.monotonic() - start
        for name, method_class in (("PHash", PHash), ("DHash", DHash), ("WHash", WHash)):
            method = method_class(verbose=False)
            start = time.monotonic()
            encodings = method.encode_images(image_dir=str(folder))
            scored = {d: score(hash_pairs(encodings, method, d), truth) for d in HASH_DISTANCES}
            figures[f"{name}_seconds"] = time.monotonic() - start
            best = max(scored, key=lambda d: scored[d]["f1"])
            rows[f"{name} 10 (default)"] = scored[10]
            rows[f"{name} {best} (best F1)"] = scored[best]
        default = f"cnncodes {cnncodes.find_duplicates.__kwdefaults__['threshold']:.2f}"
        figures["recall_by_copy"] = {
            name: recall_by_copy(found, args.families)
            for name, found in (
                (default, cnncodes_pairs(folder, float(default.split()[1]), cache)),
                ("PHash 10", hash_pairs(PHash(verbose=False).encode_images(image_dir=str(folder)), PHash(), 10)),
            )
        }
        print(
            f"{len(family_of)} images ({args.families} photos x 8 versions + {args.distractors} other photos), "
            f"{len(truth)} true pairs; cnncodes default: {default}\n"
        )
        print("| method, threshold | precision | recall | F1 | pairs found |\n|---|---:|---:|---:|---:|")
        for name, row in rows.items():
            print(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['pairs']} |")
        kinds = ["copy", *TRANSFORMS]
        print("\n| recall of original ~ copy | " + " | ".join(kinds) + " |\n|---|" + "---:|" * len(kinds))
        for name, recalls in figures["recall_by_copy"].items():
            print(f"| {name} | " + " | ".join(f"{recalls[kind]:.3f}" for kind in kinds) + " |")
        figures["rows"] = rows
        figures["default"] = default
        print(json.dumps(figures))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
