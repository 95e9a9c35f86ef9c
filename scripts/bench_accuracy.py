"""Accuracy of the heads on the default backbone's codes, with and without the 16-view protocol, and the sweep.

On each labelled set of ../shared/data, trained on its train split and scored on its held-out
split (hymenoptera: val; chest_xray: test):
- every head on EfficientNet-Lite0 penultimate codes, plain and with the Razavian et al. 2014
  16-view protocol (views averaged);
- the sweep over every stage, with average and GeM pooling: the layer it picks by 5-fold CV
  on the train split, and the one it picks on the held-out split itself (optimistic: that
  split chose it).
Prints a Markdown table per set; the last line is a JSON object of every figure.

Run: python scripts/bench_accuracy.py [--sets hymenoptera chest_xray] [--heads ...] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cnncodes
from cnncodes import CNNCodes
from cnncodes.params import HEAD_NAMES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLITS = {"hymenoptera": ("train", "val"), "chest_xray": ("train", "test")}
CLASS_WEIGHT = {"hymenoptera": None, "chest_xray": "balanced"}  # chest_xray is 74% pneumonia


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=list(SPLITS))
    parser.add_argument("--heads", nargs="*", default=list(HEAD_NAMES))
    parser.add_argument("--cache", default=True, help="cache folder (default: the user cache)")
    parser.add_argument("--parts", nargs="*", default=["heads", "sweep"], choices=["heads", "sweep"])
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
