"""Parse throughput: prototxt-tools' lossless parser against protobuf's text_format, same run.

    python benchmarks/parse.py [--repeat N] [FILE...]

Inputs: the given files, else the largest file of ../shared/corpus (when present) and a
generated ~5 MB net. For each input it times (best of N):

  text_format.Merge    protobuf's own text parser building a NetParameter (the peer)
  parse                our lossless tree: every token, its trivia and its position kept
  parse+offsets        the same with every token offset materialised (spans are lazy)
  parse+bind           tree and the NetParameter bound from it, with located diagnostics

and prints MB/s and the ratio to text_format. The issue's target: parse >= 2x text_format.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import text_format  # noqa: E402

from prototxt_tools import bind, parse  # noqa: E402
from prototxt_tools.schema import caffe_pb2  # noqa: E402
from prototxt_tools.schema.binding import detect_kind, message_class_for  # noqa: E402


def generated_net(target_bytes: int = 5_000_000, seed: int = 0) -> str:
    """A deterministic ResNet-like net with comments, of about ``target_bytes``."""
    rng = random.Random(seed)
    out = ["# generated benchmark net\nname: \"bench\"\n",
           "layer {\n  name: \"data\"\n  type: \"Input\"\n  top: \"data\"\n"
           "  input_param {\n    shape {\n      dim: 1\n      dim: 3\n      dim: 224\n"
           "      dim: 224\n    }\n  }\n}\n"]
    size = sum(map(len, out))
    bottom = "data"
    index = 0
    while size < target_bytes:
        index += 1
        conv, bn, scale = f"conv{index}", f"bn{index}", f"scale{index}"
        channels = rng.choice([64, 128, 256, 512])
        block = (
            f"# block {index}\n"
            f"layer {{\n  name: \"{conv}\"\n  type: \"Convolution\"\n  bottom: \"{bottom}\"\n"
            f"  top: \"{conv}\"\n  param {{\n    lr_mult: 1\n    decay_mult: 1\n  }}\n"
            f"  convolution_param {{\n    num_output: {channels}\n    bias_term: false\n"
            f"    pad: 1\n    kernel_size: 3\n    stride: {rng.choice([1, 2])}\n"
            f"    weight_filler {{\n      type: \"msra\"\n      std: {rng.random():.6f}\n    }}\n"
            f"  }}\n}}\n"
            f"layer {{\n  name: \"{bn}\"\n  type: \"BatchNorm\"\n  bottom: \"{conv}\"\n"
            f"  top: \"{conv}\"  # in place\n"
            + "  param {\n    lr_mult: 0\n    decay_mult: 0\n  }\n" * 3
            + "  batch_norm_param {\n    eps: 1e-05\n"
            + "    moving_average_fraction: 0.999\n  }\n}\n"
            f"layer {{\n  name: \"{scale}\"\n  type: \"Scale\"\n  bottom: \"{conv}\"\n"
            f"  top: \"{conv}\"\n  scale_param {{\n    bias_term: true\n  }}\n}}\n"
            f"layer {{\n  name: \"relu{index}\"\n  type: \"ReLU\"\n  bottom: \"{conv}\"\n"
            f"  top: \"{conv}\"\n}}\n")
        out.append(block)
        size += len(block)
        bottom = conv
    return "".join(out)


def best_time(function: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def bench(name: str, text: str, repeat: int) -> dict:
    megabytes = len(text.encode("utf-8", "surrogateescape")) / 1e6
    kind = detect_kind(parse(text))
    message_class = message_class_for(kind)

    def peer() -> None:
        text_format.Merge(text, message_class(), allow_unknown_field=True)

    def ours() -> None:
        parse(text)

    def ours_offsets() -> None:
        document = parse(text)
        document.token_offset(document.token_count - 1)

    def ours_bind() -> None:
        bind(parse(text), kind)

    timings = {"text_format.Merge": best_time(peer, repeat), "parse": best_time(ours, repeat),
               "parse+offsets": best_time(ours_offsets, repeat),
               "parse+bind": best_time(ours_bind, repeat)}
    peer_time = timings["text_format.Merge"]
    print(f"\n{name}: {megabytes:.2f} MB ({kind})")
    print(f"  {'method':<20} {'MB/s':>8} {'vs text_format':>15}")
    for method, seconds in timings.items():
        print(f"  {method:<20} {megabytes / seconds:8.2f} {peer_time / seconds:14.2f}x")
    return {"name": name, "megabytes": megabytes,
            **{method: megabytes / seconds for method, seconds in timings.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    inputs: list[tuple[str, str]] = []
    files = list(args.files)
    if not files:
        corpus = ROOT.parent / "shared" / "corpus" / "files"
        if corpus.is_dir():
            files.append(max(corpus.iterdir(), key=lambda p: p.stat().st_size))
    for path in files:
        inputs.append((path.name, path.read_bytes().decode("utf-8", "surrogateescape")))
    if not args.files:
        inputs.append(("generated ~5 MB net", generated_net()))
    print(f"protobuf {getattr(caffe_pb2, '__name__', '')} backend: "
          f"{_protobuf_backend()}; best of {args.repeat} runs")
    results = [bench(name, text, args.repeat) for name, text in inputs]
    worst = min(r["parse"] / r["text_format.Merge"] for r in results)
    print(f"\nworst parse / text_format ratio: {worst:.2f}x (target >= 2x)")
    return 0 if worst >= 2 else 1


def _protobuf_backend() -> str:
    try:
        from google.protobuf.internal import api_implementation

        return api_implementation.Type()
    except ImportError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
