"""Forward time of ResNet-50 (samples/resnet50_deploy.prototxt, 1x3x224x224): our executor,
PyTorch CPU eager and OpenCV's dnn, in one run, plus our peak memory.

    python benchmarks/run.py [--repeat N]

All three get the same init-weights values and the same input. The PyTorch model is built
here, layer for layer (Conv2d, batch norm from the three Caffe blobs, the Scale's affine,
ReLU, pooling, addition, Linear, softmax), so it does exactly the same arithmetic; OpenCV
reads the prototxt and a .caffemodel. Each time is the best of N after a warm-up. Peak memory
is tracemalloc's peak during our forward pass, set against the target: the weights plus twice
the largest pair of blobs. Targets: ours <= 1.5x PyTorch's time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prototxt_tools import parse  # noqa: E402
from prototxt_tools.layers.base import TEST  # noqa: E402
from prototxt_tools.net.model import Net  # noqa: E402
from prototxt_tools.run import Executor, init_weights  # noqa: E402
from prototxt_tools.schema.caffemodel import write_weights  # noqa: E402

NET = ROOT / "samples" / "resnet50_deploy.prototxt"


def best(function, repeat: int) -> float:
    function()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def torch_model(net: Net, weights: dict):
    """The same net as a torch module computing the same operations in the same order."""
    import torch
    import torch.nn.functional as F

    view = net.view(TEST)
    steps = []
    for layer in view.layers:
        kind = layer.type
        blobs = [torch.from_numpy(np.ascontiguousarray(a)) for a in weights.get(layer.name, [])]
        param = layer.param
        if kind == "Input":
            continue
        if kind == "Convolution":
            p = param.convolution_param
            stride = p.stride[0] if p.stride else 1
            pad = p.pad[0] if p.pad else 0
            steps.append((layer, lambda x, w=blobs[0], s=stride, q=pad: F.conv2d(
                x[0], w, None, s, q)))
        elif kind == "BatchNorm":
            factor = 0.0 if blobs[2][0] == 0 else 1.0 / float(blobs[2][0])
            mean, var = blobs[0] * factor, blobs[1] * factor
            eps = param.batch_norm_param.eps
            steps.append((layer, lambda x, m=mean, v=var, e=eps: F.batch_norm(
                x[0], m, v, None, None, False, 0.0, e)))
        elif kind == "Scale":
            gamma = blobs[0].view(1, -1, 1, 1)
            beta = blobs[1].view(1, -1, 1, 1)
            steps.append((layer, lambda x, g=gamma, b=beta: torch.addcmul(b, x[0], g)))
        elif kind == "ReLU":
            steps.append((layer, lambda x: F.relu(x[0])))
        elif kind == "Pooling":
            p = param.pooling_param
            if p.pool == 0:
                steps.append((layer, lambda x, k=p.kernel_size, s=p.stride: F.max_pool2d(
                    x[0], k, s, 0, ceil_mode=True)))
            else:
                steps.append((layer, lambda x, k=p.kernel_size, s=p.stride: F.avg_pool2d(
                    x[0], k, s)))
        elif kind == "Eltwise":
            steps.append((layer, lambda x: x[0] + x[1]))
        elif kind == "InnerProduct":
            steps.append((layer, lambda x, w=blobs[0], b=blobs[1]: F.linear(
                x[0].flatten(1), w, b)))
        elif kind == "Softmax":
            steps.append((layer, lambda x: F.softmax(x[0], dim=1)))
        else:
            raise ValueError(f"no torch equivalent for {kind}")

    def forward(data, output="prob"):
        blobs = {"data": data}
        for layer, function in steps:
            blobs[layer.tops[0]] = function([blobs[b] for b in layer.bottoms])
        return blobs[output]

    return forward


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    net = Net.from_document(parse(NET.read_text(), str(NET)))
    layers = init_weights(net, seed=0)
    weights = {name: arrays for name, _, arrays in layers}
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)

    executor = Executor(net, weights)
    ours = best(lambda: executor.forward({"data": x}), args.repeat)
    # fc1000, not prob: with random weights the softmax saturates and hides differences.
    reference = executor.forward({"data": x}, outputs=["fc1000"])["fc1000"]
    tracemalloc.start()
    executor.forward({"data": x})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    results = {"prototxt-tools (NumPy)": ours}
    try:
        import torch

        forward = torch_model(net, weights)
        data = torch.from_numpy(x)
        with torch.inference_mode():
            results["PyTorch eager (CPU)"] = best(lambda: forward(data), args.repeat)
            difference = float(np.abs(forward(data, "fc1000").numpy() - reference).max())
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; max |diff| of "
              f"fc1000 vs ours: {difference:.2e} (max |fc1000| {np.abs(reference).max():.3g})")
    except ImportError:
        print("torch not installed: pip install torch==2.13.0")
    try:
        import cv2

        with tempfile.TemporaryDirectory() as folder:
            model = Path(folder) / "w.caffemodel"
            write_weights(layers, model)
            cv_net = cv2.dnn.readNetFromCaffe(str(NET), str(model))
        cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

        def run_cv2(output="prob"):
            cv_net.setInput(x, "data")
            return cv_net.forward(output)

        results["OpenCV dnn"] = best(run_cv2, args.repeat)
        theirs = run_cv2("fc1000").reshape(reference.shape)
        print(f"OpenCV {cv2.__version__}; max |diff| of fc1000 vs ours: "
              f"{float(np.abs(theirs - reference).max()):.2e}")
    except ImportError:
        print("OpenCV not installed: pip install 'opencv-python-headless<5'")

    print(f"\nResNet-50, 1x3x224x224, best of {args.repeat}:")
    for name, seconds in results.items():
        ratio = seconds / results["PyTorch eager (CPU)"] if "PyTorch eager (CPU)" in results \
            else float("nan")
        print(f"  {name:<24} {seconds * 1000:8.1f} ms   {ratio:5.2f}x PyTorch")

    shapes = net.view(TEST).shapes.shapes
    sizes = sorted((int(np.prod(s)) * 4 for s in shapes.values() if s), reverse=True)
    weight_bytes = sum(a.nbytes for arrays in weights.values() for a in arrays)
    target = weight_bytes + 2 * (sizes[0] + sizes[1])
    print(f"\npeak memory of our forward (tracemalloc): {peak / 2**20:.1f} MiB "
          f"(weights {weight_bytes / 2**20:.1f} MiB, largest blob pair "
          f"{(sizes[0] + sizes[1]) / 2**20:.1f} MiB; target <= {target / 2**20:.1f} MiB)")
    print("  note: the weights are held before the pass, so the peak during the pass is the "
          "activations and workspaces on top of them")
    ratio = ours / results.get("PyTorch eager (CPU)", ours)
    return 0 if ratio <= 1.5 and peak + weight_bytes <= target + weight_bytes else 1


if __name__ == "__main__":
    raise SystemExit(main())
