"""A PyTorch reference EfficientNet-Lite for parity tests (eager, TF 'SAME' padding, BN eps 1e-3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    size = x.shape[-1]
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return F.pad(x, [total // 2, total - total // 2, total // 2, total - total // 2])


class ReferenceLite(torch.nn.Module):
    """Runs a lukemelas-layout EfficientNet-Lite state dict; forward returns every tap by name."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.state = {k: v.float() for k, v in state.items()}
        self.blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("_blocks.")})

    def conv_bn(self, x: torch.Tensor, conv: str, bn: str, stride: int, groups: int = 1) -> torch.Tensor:
        w = self.state[f"{conv}.weight"]
        x = F.conv2d(same_pad(x, w.shape[-1], stride), w, stride=stride, groups=groups)
        s = self.state
        return F.batch_norm(
            x,
            s[f"{bn}.running_mean"],
            s[f"{bn}.running_var"],
            s[f"{bn}.weight"],
            s[f"{bn}.bias"],
            training=False,
            eps=1e-3,
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x = F.relu6(self.conv_bn(x, "_conv_stem", "_bn0", 2))
        stage, channels = -1, x.shape[1]
        for position, index in enumerate(self.blocks):
            p = f"_blocks.{index}"
            out_channels = self.state[f"{p}._project_conv.weight"].shape[0]
            first = position == 0 or out_channels != channels
            stage += first
            stride = STAGE_STRIDES[stage] if first else 1
            h = x
            if f"{p}._expand_conv.weight" in self.state:
                h = F.relu6(self.conv_bn(h, f"{p}._expand_conv", f"{p}._bn0", 1))
            h = F.relu6(self.conv_bn(h, f"{p}._depthwise_conv", f"{p}._bn1", stride, groups=h.shape[1]))
            h = self.conv_bn(h, f"{p}._project_conv", f"{p}._bn2", 1)
            if stride == 1 and channels == out_channels:
                h = h + x
            x, channels = h, out_channels
            out[f"stage{stage + 1}"] = x
        head = F.relu6(self.conv_bn(x, "_conv_head", "_bn1", 1))
        out["head"] = head
        out["penultimate"] = head.mean(dim=(2, 3))
        out["logits"] = F.linear(out["penultimate"], self.state["_fc.weight"], self.state["_fc.bias"])
        return out
