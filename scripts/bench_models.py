"""Inference speed of the offline zoo models under ONNX Runtime: images/s at batch 1 and 32.

Run: python scripts/bench_models.py [--seconds 5]
Prints a table and, as its last line, a JSON object {model: {"batch_1": ips, "batch_32": ips}}.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import cnncodes


def images_per_second(extractor: cnncodes.Extractor, batch_size: int, seconds: float) -> float:
    size = extractor.backbone.input_size
    pixels = np.random.default_rng(0).integers(0, 256, size=(batch_size, size, size, 3), dtype=np.uint8)
    extractor.codes_of_pixels(pixels)  # warm-up: session creation and first run
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        extractor.codes_of_pixels(pixels)
        done += batch_size
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--models", nargs="*", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    )
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for model in args.models:
        extractor = cnncodes.Extractor(cnncodes.ExtractionOptions(model=model), cache=False, device="cpu")
        results[model] = {f"batch_{b}": round(images_per_second(extractor, b, args.seconds), 1) for b in (1, 32)}
    print(f"{'model':<20} {'batch 1':>10} {'batch 32':>10}   (images/s, ONNX Runtime, penultimate codes)")
    for model, row in results.items():
        print(f"{model:<20} {row['batch_1']:>10.1f} {row['batch_32']:>10.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
