"""Inference speed of the offline zoo models under ONNX Runtime: images/s at batch 1 and 32.

Run: python scripts/bench_models.py [--seconds 5] [--device cpu]
Prints a table and, as its last line, a JSON object {model: {"batch_1": ips, "batch_32": ips}}.

It times the model alone (uint8 pixels in, penultimate codes out), so it reaches below the
public facade to the zoo's own layer: decoding and caching are timed by bench_extract.py.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cnncodes.modelfiles import ensure_model_file, resolve_backbone
from cnncodes.params import DEVICES
from cnncodes.runtime import Session
from cnncodes.taps import prepare_model


def open_session(model: str, device: str) -> tuple[Session, int]:
    """A session on ``model``'s penultimate tap, and its input size."""
    spec = resolve_backbone(model)
    prepared = prepare_model(
        ensure_model_file(spec),
        [spec.get_tap(spec.default_tap).tensor],
        input_name=spec.input_name,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        color_order=spec.color_order,
    )
    return Session(prepared, device, batch_size=32), spec.input_size  # a call of 32 rows is not split


def images_per_second(session: Session, size: int, batch_size: int, seconds: float) -> float:
    pixels = np.random.default_rng(0).integers(0, 256, size=(batch_size, size, size, 3), dtype=np.uint8)
    session.run(pixels)  # warm-up: the first run allocates
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(pixels)
        done += batch_size
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument(
        "--models", nargs="*", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    )
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for model in args.models:
        session, size = open_session(model, args.device)
        results[model] = {f"batch_{b}": round(images_per_second(session, size, b, args.seconds), 1) for b in (1, 32)}
    print(f"{'model':<20} {'batch 1':>10} {'batch 32':>10}   (images/s, ONNX Runtime, penultimate codes)")
    for model, row in results.items():
        print(f"{model:<20} {row['batch_1']:>10.1f} {row['batch_32']:>10.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
