"""PyTorch export: the emitted ResNet-50 against a hand-written one, and conversion cost.

    python benchmarks/export.py [--repeat N] [--megabytes M]

1. Forward time, 1x3x224x224, eval mode, no autograd: the module `prototxt to-pytorch` writes
   for samples/resnet50_deploy.prototxt against a ResNet-50 written by hand below (torchvision
   style: Bottleneck blocks, BatchNorm2d + ReLU(inplace), Caffe's layout: stride in the first
   1x1 convolution, ceil-mode max pool, 7x7 average pool, no biases in the convolutions) with
   the same weights. Runs alternate between the two; each time is the best of N. Target:
   emitted / hand-written <= 1.05.
2. Conversion of a generated net whose .caffemodel is over 200 MB (init-weights values): time,
   and peak resident memory of the conversion (module text + state_dict written) in a fresh
   process, measured from just before the conversion (the peak counter reset after imports).
   Target: peak <= 2.5x the weights' size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prototxt_tools import parse  # noqa: E402
from prototxt_tools.export import load_module, to_pytorch  # noqa: E402
from prototxt_tools.net.model import Net  # noqa: E402
from prototxt_tools.run import init_weights  # noqa: E402

NET = ROOT / "samples" / "resnet50_deploy.prototxt"


def hand_written_resnet50():
    """ResNet-50 as one would write it in PyTorch, shaped like the Caffe model."""
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride, project):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4)) if project else None

        def forward(self, x):
            identity = self.downsample(x) if self.downsample is not None else x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, ceil_mode=True)
            layers, inplanes = [], 64
            for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                stage = [Bottleneck(inplanes, planes, stride, True)]
                stage += [Bottleneck(planes * 4, planes, 1, False) for _ in range(blocks - 1)]
                layers.append(nn.Sequential(*stage))
                inplanes = planes * 4
            self.layers = nn.Sequential(*layers)
            self.avgpool = nn.AvgPool2d(7)
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.avgpool(self.layers(x))
            return torch.softmax(self.fc(x.flatten(1)), 1)

    return ResNet50()


def load_caffe_weights(model, weights: dict) -> None:
    """The Caffe ResNet-50's blobs into the hand-written model (names by position)."""
    import torch

    def bn(module, prefix):
        mean, var, factor = weights[f"bn{prefix}"]
        f = 0.0 if factor[0] == 0 else 1.0 / factor[0]
        gamma, beta = weights[f"scale{prefix}"]
        module.running_mean.copy_(torch.from_numpy(mean * f))
        module.running_var.copy_(torch.from_numpy(var * f))
        module.weight.data.copy_(torch.from_numpy(gamma))
        module.bias.data.copy_(torch.from_numpy(beta))
        module.eps = 1e-5

    with torch.no_grad():
        model.conv1.weight.copy_(torch.from_numpy(weights["conv1"][0]))
        bn(model.bn1, "_conv1")
        for stage, blocks in zip(range(2, 6), model.layers):
            for index, block in enumerate(blocks):
                name = f"{stage}{'abcdef'[index]}"
                for conv, bnorm, branch in ((block.conv1, block.bn1, "2a"),
                                            (block.conv2, block.bn2, "2b"),
                                            (block.conv3, block.bn3, "2c")):
                    conv.weight.copy_(torch.from_numpy(weights[f"res{name}_branch{branch}"][0]))
                    bn(bnorm, f"{name}_branch{branch}")
                if block.downsample is not None:
                    block.downsample[0].weight.copy_(
                        torch.from_numpy(weights[f"res{name}_branch1"][0]))
                    bn(block.downsample[1], f"{name}_branch1")
        model.fc.weight.copy_(torch.from_numpy(weights["fc1000"][0]))
        model.fc.bias.copy_(torch.from_numpy(weights["fc1000"][1]))


def forward_times(repeat: int) -> dict:
    import torch

    net = Net.from_document(parse(NET.read_text(), str(NET)))
    weights = {name: arrays for name, _, arrays in init_weights(net, seed=0)}
    emitted = load_module(to_pytorch(net, weights))
    written = hand_written_resnet50().eval()
    load_caffe_weights(written, weights)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 224, 224))
                         .astype(np.float32))
    times = {"emitted": [], "hand-written": []}
    with torch.inference_mode():
        difference = float((emitted(x) - written(x)).abs().max())
        for _ in range(2):  # warm up
            emitted(x)
            written(x)
        for _ in range(repeat):
            for name, model in (("emitted", emitted), ("hand-written", written)):
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {"emitted": min(times["emitted"]), "hand-written": min(times["hand-written"]),
            "difference": difference, "threads": torch.get_num_threads()}


BIG_NET = """name: "big"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: {width} }} }} }}
{layers}
"""


def conversion(megabytes: int) -> dict:
    """Write a net of InnerProduct layers holding ``megabytes`` of weights, then convert it in
    a fresh process and report its time and peak memory."""
    width = 4096
    count = max(1, round(megabytes * 2**20 / (4 * (width * width + width))))
    layers = []
    bottom = "data"
    for index in range(count):
        layers.append(f'layer {{ name: "fc{index}" type: "InnerProduct" bottom: "{bottom}" '
                      f'top: "fc{index}" inner_product_param {{ num_output: {width} }} }}')
        bottom = f"fc{index}"
    with tempfile.TemporaryDirectory() as folder:
        net_path = Path(folder) / "big.prototxt"
        net_path.write_text(BIG_NET.format(width=width, layers="\n".join(layers)))
        model = Path(folder) / "big.caffemodel"
        subprocess.run([sys.executable, "-m", "prototxt_tools", "init-weights", str(net_path),
                        "-o", str(model)], check=True, capture_output=True)
        script = f"""
import json, os, resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
import torch, numpy
from prototxt_tools.cli import main
from prototxt_tools.export import pytorch  # noqa: F401 (imports done before measuring)
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset the peak resident set size
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = rss("VmRSS:")
start = time.perf_counter()
code = main(["to-pytorch", {str(net_path)!r}, "--weights", {str(model)!r}, "-o",
             {str(Path(folder) / "big.py")!r}, "--no-verify"])
elapsed = time.perf_counter() - start
print(json.dumps({{"code": code, "seconds": elapsed, "peak": rss("VmHWM:") - before,
                  "before": before}}))
"""
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                check=True)
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        measured["weights"] = os.path.getsize(model)
        measured["state_dict"] = os.path.getsize(Path(folder) / "big.pt")
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=256)
    args = parser.parse_args()
    times = forward_times(args.repeat)
    ratio = times["emitted"] / times["hand-written"]
    print(f"ResNet-50 forward, 1x3x224x224, best of {args.repeat} ({times['threads']} threads):"
          f"\n  emitted      {times['emitted'] * 1000:7.1f} ms\n  hand-written "
          f"{times['hand-written'] * 1000:7.1f} ms\n  ratio        {ratio:7.3f} (target <= "
          f"1.05); max |difference| of the outputs {times['difference']:.2g}")
    measured = conversion(args.megabytes)
    weights = measured["weights"]
    peak_ratio = measured["peak"] / weights
    print(f"\nconversion of a {weights / 2**20:.0f} MiB caffemodel (to-pytorch --no-verify): "
          f"{measured['seconds']:.1f} s, peak memory {measured['peak'] / 2**20:.0f} MiB above "
          f"the {measured['before'] / 2**20:.0f} MiB after imports = {peak_ratio:.2f}x the "
          f"weights (target <= 2.5); state_dict {measured['state_dict'] / 2**20:.0f} MiB")
    return 0 if ratio <= 1.05 and peak_ratio <= 2.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
