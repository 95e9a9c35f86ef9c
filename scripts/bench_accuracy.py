"""Accuracy of the heads on the default backbone's codes, with and without the 16-view protocol, and the sweep.

On each labelled set of ../shared/data, trained on its train split and scored on its held-out
split (hymenoptera: val; chest_xray: test):
- every head on EfficientNet-Lite0 penultimate codes, plain and with the Razavian et al. 2014
  16-view protocol (views averaged);
- the sweep over every stage, with average and GeM pooling: the layer it picks by 5-fold CV
  on the train split, and the one it picks on the held-out split itself (optimistic: that
  split chose it);
- int8 against fp32 (``--parts precision``): logistic regression (C=0.1, the head's default)
  on the codes of the penultimate and of every stage the sweep tries, at each precision; a
  tap that loses more than 0.5 point (accuracy or balanced accuracy) is marked LOSSY;
- a faster decode path against the exact one (``--parts decode``): JPEGs whose short side
  is at least 1.33x what the crop needs decoded at libjpeg's 1/2 DCT scale (then upsampled),
  its CPU time, the cosine of its penultimate codes to the exact path's and logistic
  regression's accuracy on each.
Prints a Markdown table per set; the last line is a JSON object of every figure.

Run: python scripts/bench_accuracy.py [--sets hymenoptera chest_xray] [--heads ...] [--cache DIR]
     [--parts heads sweep precision decode] [--precision-poolings avg gem]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import cnncodes
from cnncodes import CNNCodes
from cnncodes.engine import ExtractionOptions, Extractor
from cnncodes.fastdecode import decode_array, make_fast_views
from cnncodes.images import Preprocessing, decode_image, make_views
from cnncodes.params import HEAD_NAMES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLITS = {"hymenoptera": ("train", "val"), "chest_xray": ("train", "test")}
CLASS_WEIGHT = {"hymenoptera": None, "chest_xray": "balanced"}  # chest_xray is 74% pneumonia
# The sweep's taps of the default backbone (cnncodes.selection.default_layer_sets), earliest first.
SWEEP_LAYERS = ("stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "penultimate")
LOSSY_POINTS = 0.5  # a tap whose int8 codes lose more than this (percentage points) is named in its card


def score(
    train: Path,
    held_out: Path,
    head: str,
    codes: CNNCodes,
    class_weight: str | None,
    params: dict[str, object] | None = None,
) -> dict[str, float]:
    start = time.monotonic()
    model = cnncodes.train(train, head=head, codes=codes, class_weight=class_weight, params=params)
    report = cnncodes.evaluate(model.bundle, held_out, cache=codes.cache).report
    return {
        "accuracy": report.accuracy,
        "balanced_accuracy": report.balanced_accuracy,
        "cv_accuracy": model.cv_accuracy,
        "params": params or model.best_params,
        "seconds": time.monotonic() - start,
    }


def sweep_pick(
    train: Path, held_out: Path, codes: CNNCodes, class_weight: str | None, on_split: bool
) -> dict[str, object]:
    result = cnncodes.sweep(
        train,
        codes=codes,
        val=held_out if on_split else None,
        class_weight=class_weight,
        baseline=not on_split,
        poolings=("avg", "gem"),
    )
    best = result.best
    layer = tuple(best.features.split("+"))
    picked = CNNCodes(**{**codes.get_params(), "layer": layer, "pooling": best.pooling})
    held = score(train, held_out, best.head, picked, class_weight, params=best.params)
    baseline = result.baseline
    return {
        "layer": f"{best.features} ({best.pooling})",
        "head": best.head,
        "sweep_balanced_accuracy": best.balanced_accuracy,
        **held,
        "baseline_balanced_accuracy": baseline.balanced_accuracy if baseline else None,
    }


def precision_rows(
    train: Path, held_out: Path, class_weight: str | None, cache: object, poolings: list[str]
) -> dict[str, dict[str, object]]:
    """int8 against fp32 for every sweep tap: the same head, the same images, codes of each precision."""
    rows: dict[str, dict[str, object]] = {}
    for pooling in poolings:
        scores: dict[str, dict[str, dict[str, float]]] = {}
        for precision in ("fp32", "int8"):
            start = time.monotonic()
            for split in (train, held_out):  # all taps in one pass per split, cached; the heads read them back
                cnncodes.extract(split, layer=SWEEP_LAYERS, pooling=pooling, precision=precision, cache=cache)
            print(f"  {precision} codes ({pooling}): {time.monotonic() - start:.0f} s", flush=True)
            for layer in SWEEP_LAYERS:
                codes = CNNCodes(layer=layer, pooling=pooling, precision=precision, cache=cache)
                scores.setdefault(layer, {})[precision] = score(
                    train, held_out, "logistic", codes, class_weight, params={"C": 0.1}
                )
        for layer, by_precision in scores.items():
            fp32, int8 = by_precision["fp32"], by_precision["int8"]
            loss = {k: 100 * (fp32[k] - int8[k]) for k in ("accuracy", "balanced_accuracy")}
            rows[f"{layer} ({pooling})"] = {
                "fp32_accuracy": fp32["accuracy"],
                "int8_accuracy": int8["accuracy"],
                "fp32_balanced_accuracy": fp32["balanced_accuracy"],
                "int8_balanced_accuracy": int8["balanced_accuracy"],
                "loss_points": loss["accuracy"],
                "balanced_loss_points": loss["balanced_accuracy"],
                "lossy": max(loss.values()) > LOSSY_POINTS,
            }
    return rows


def decode_both(paths: list[str]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Model inputs of ``paths`` by the exact path and by the fast decoder, and the CPU ms of each."""
    pre = Preprocessing(224, 0.875, "bicubic")  # EfficientNet-Lite0's card
    exact, fast, cpu = [], [], [0.0, 0.0]
    for path in paths:
        start = time.process_time()
        exact.append(make_views(decode_image(path, pre), pre)[0])
        middle = time.process_time()
        fast.append(make_fast_views(decode_array(path, pre), pre)[0])
        cpu[0], cpu[1] = cpu[0] + middle - start, cpu[1] + time.process_time() - middle
    return np.stack(exact), np.stack(fast), 1000 * cpu[0] / len(paths), 1000 * cpu[1] / len(paths)


def decode_parity(train: Path, held_out: Path, class_weight: str | None) -> dict[str, float]:
    """The faster decode candidate against the exact path: CPU time, code cosine, held-out accuracy."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    extractor = Extractor(ExtractionOptions(), cache=False)
    codes: dict[str, dict[str, np.ndarray]] = {}
    labels, cpu = {}, {"exact": 0.0, "fast": 0.0}
    for split, folder in (("train", train), ("held_out", held_out)):
        dataset = cnncodes.load_dataset(folder)
        exact, fast, cpu_exact, cpu_fast = decode_both(list(dataset.paths))
        cpu["exact"], cpu["fast"] = cpu["exact"] + cpu_exact / 2, cpu["fast"] + cpu_fast / 2
        labels[split] = np.asarray(dataset.labels)
        for path_name, pixels in (("exact", exact), ("fast", fast)):
            blocks = [extractor.codes_of_pixels(pixels[i : i + 8]) for i in range(0, len(pixels), 8)]
            codes.setdefault(path_name, {})[split] = np.concatenate(blocks)
    a, b = codes["exact"]["held_out"], codes["fast"]["held_out"]
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    result: dict[str, float] = {
        "exact_core_ms": cpu["exact"],
        "fast_core_ms": cpu["fast"],
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
    }
    for path_name in ("exact", "fast"):
        head = cnncodes.make_head("logistic", cv=None, class_weight=class_weight).set_params(clf__C=0.1)
        predicted = head.fit(codes[path_name]["train"], labels["train"]).predict(codes[path_name]["held_out"])
        result[f"{path_name}_accuracy"] = accuracy_score(labels["held_out"], predicted)
        result[f"{path_name}_balanced_accuracy"] = balanced_accuracy_score(labels["held_out"], predicted)
    return result


def print_precision_table(name: str, rows: dict[str, dict[str, object]]) -> None:
    print(f"\n{name}: int8 vs fp32, logistic (C=0.1); LOSSY: loses more than {LOSSY_POINTS} point")
    print("| tap (pooling) | fp32 acc | int8 acc | fp32 bal | int8 bal | loss (points) | |")
    print("|---|---:|---:|---:|---:|---:|---|")
    keys = ("fp32_accuracy", "int8_accuracy", "fp32_balanced_accuracy", "int8_balanced_accuracy")
    for key, row in rows.items():
        cells = " | ".join(f"{100 * float(row[k]):.1f}%" for k in keys)  # type: ignore[arg-type]
        loss = f"{row['loss_points']:+.1f} / {row['balanced_loss_points']:+.1f}"
        print(f"| {key} | {cells} | {loss} | {'LOSSY' if row['lossy'] else ''} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=list(SPLITS))
    parser.add_argument("--heads", nargs="*", default=list(HEAD_NAMES))
    parser.add_argument("--cache", default=True, help="cache folder (default: the user cache)")
    parts = ["heads", "sweep", "precision", "decode"]
    parser.add_argument("--parts", nargs="*", default=parts, choices=parts)
    parser.add_argument("--precision-poolings", nargs="*", default=["avg"], choices=["avg", "max", "gem"])
    args = parser.parse_args()
    figures: dict[str, dict[str, object]] = {}
    for name in args.sets:
        train, held_out = (SHARED / name / split for split in SPLITS[name])
        weight = CLASS_WEIGHT[name]
        rows: dict[str, object] = {}
        for views in ("none", "razavian16") if "heads" in args.parts else ():
            codes = CNNCodes(views=views, cache=args.cache)
            for head in args.heads:
                rows[f"{head} / penultimate / views={views}"] = score(train, held_out, head, codes, weight)
                print(name, head, views, rows[f"{head} / penultimate / views={views}"], flush=True)
        if "precision" in args.parts:
            print(f"{name}: int8 vs fp32", flush=True)
            figures[f"{name} int8 vs fp32"] = precision_rows(
                train, held_out, weight, args.cache, args.precision_poolings
            )
            print_precision_table(name, figures[f"{name} int8 vs fp32"])
        if "decode" in args.parts:
            parity = decode_parity(train, held_out, weight)
            figures[f"{name} decode parity"] = parity
            print(
                f"\n{name}: faster decode candidate vs exact: " + ", ".join(f"{k} {v:.4f}" for k, v in parity.items())
            )
        codes = CNNCodes(cache=args.cache)
        if "sweep" not in args.parts:
            figures[name] = rows
            continue
        rows["sweep, picked by 5-fold CV on train"] = sweep_pick(train, held_out, codes, weight, on_split=False)
        rows[f"sweep, picked on the {SPLITS[name][1]} split (optimistic)"] = sweep_pick(
            train, held_out, codes, weight, on_split=True
        )
        figures[name] = rows
        print(f"\n{name}: trained on {SPLITS[name][0]}, scored on {SPLITS[name][1]}; class_weight={weight}")
        print("| features / head | accuracy | balanced accuracy | chosen |")
        print("|---|---:|---:|---|")
        for key, row in rows.items():
            chosen = ", ".join(f"{k}={v}" for k, v in row["params"].items())
            if "layer" in row:
                key = f"{key}: {row['layer']} + {row['head']}"
            print(f"| {key} | {100 * row['accuracy']:.1f}% | {100 * row['balanced_accuracy']:.1f}% | {chosen} |")
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
