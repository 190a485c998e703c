"""Whole-process cost of `prototxt lint` against a process that only parses the same file.

    python benchmarks/lint.py [--repeat N] [FILE]

The peer is a fresh Python process that imports protobuf and our generated caffe_pb2 and runs
google.protobuf.text_format.Merge on the file, nothing else. Ours is a fresh `prototxt lint`
process: parse, bind, upgrade, build both phases' nets, infer every shape and run every rule.
Both are timed in this run (best of N wall-clock times, start-up included). Target: lint /
peer <= 1.0. The file defaults to the largest one in ../shared/corpus.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PEER = """
import sys
from google.protobuf import text_format
from prototxt_tools.schema import caffe_pb2
with open(sys.argv[1], encoding="utf-8", errors="replace") as handle:
    text_format.Merge(handle.read(), caffe_pb2.NetParameter(), allow_unknown_field=True)
"""


def best_time(command: list, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = args.file
    if path is None:
        corpus = ROOT.parent / "shared" / "corpus" / "files"
        if not corpus.is_dir():
            print("no file given and no corpus at ../shared/corpus", file=sys.stderr)
            return 2
        path = max(corpus.iterdir(), key=lambda p: p.stat().st_size)
    size = path.stat().st_size / 1e6
    lint = best_time([sys.executable, "-m", "prototxt_tools", "lint", "-q", str(path)],
                     args.repeat)
    peer = best_time([sys.executable, "-c", PEER, str(path)], args.repeat)
    print(f"{path.name}: {size:.2f} MB, best of {args.repeat}")
    print(f"  prototxt lint (whole process)          {lint:6.2f} s")
    print(f"  python + text_format.Merge (peer)      {peer:6.2f} s")
    print(f"  ratio lint / peer                      {lint / peer:6.2f}   (target <= 1.0)")
    return 0 if lint <= peer else 1


if __name__ == "__main__":
    raise SystemExit(main())
