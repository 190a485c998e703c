"""The ``prototxt`` command. Thin: parse arguments, call the API, print, set the exit code.

Exit codes: 0 clean; 1 findings (check), files that would change (fmt --check/--diff); 2 usage
errors and input that cannot be read or parsed where the command needs it; 3 an internal error
(a bug: please report it). Messages about input are one line, ``file:line:col: message``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from typing import Callable, Optional, Sequence

from ._version import __version__
from .errors import ERROR, WARNING, Diagnostic, PrototxtError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

BINARY_SUFFIXES = {".caffemodel": "caffemodel", ".binaryproto": "binaryproto",
                   ".solverstate": "solverstate"}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _reader(path: str) -> bytes:
    from .fileio import read_bytes

    if path == "-":
        return sys.stdin.buffer.read()
    return read_bytes(path)


def _display(path: str) -> str:
    return "<stdin>" if path == "-" else path


# -- check -------------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    from .schema.binding import bind
    from .syntax.parser import parse

    counts = {ERROR: 0, WARNING: 0}
    unreadable = 0
    for path in args.files:
        display = _display(path)
        try:
            data = _reader(path)
            suffix = os.path.splitext(path)[1].lower()
            if suffix in BINARY_SUFFIXES:
                diagnostics = _check_binary(data, display, BINARY_SUFFIXES[suffix])
            else:
                document = parse(data, display)
                diagnostics = bind(document, args.kind).diagnostics
        except PrototxtError as exc:
            if exc.line is None:  # only reading the file fails without a position
                unreadable += 1
            diagnostics = exc.diagnostics
        for diagnostic in diagnostics:
            counts[diagnostic.severity] = counts.get(diagnostic.severity, 0) + 1
            if args.quiet and diagnostic.severity != ERROR:
                continue
            print(diagnostic.format())
    files = len(args.files)
    if not args.quiet:
        summary = f"checked {files} file{'s' if files != 1 else ''}: " \
                  f"{_plural(counts[ERROR], 'error')}, {_plural(counts[WARNING], 'warning')}"
        print(summary, file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    if counts[ERROR] or (args.strict and counts[WARNING]):
        return EXIT_FINDINGS
    return EXIT_OK


def _check_binary(data: bytes, display: str, kind: str) -> list[Diagnostic]:
    from google.protobuf.message import DecodeError

    from .schema import caffe_pb2

    message_class = {"caffemodel": caffe_pb2.NetParameter,
                     "binaryproto": caffe_pb2.BlobProto,
                     "solverstate": caffe_pb2.SolverState}[kind]
    try:
        message_class.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        return [Diagnostic(f"not a valid .{kind} (binary {message_class.DESCRIPTOR.name}): "
                           f"{exc}", display)]
    return []


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- fmt ---------------------------------------------------------------------------------------

def cmd_fmt(args: argparse.Namespace) -> int:
    from .fileio import atomic_write, decode_text, encode_text
    from .syntax.format import format_text

    modes = [m for m in ("check", "diff", "in_place") if getattr(args, m)]
    if len(args.files) > 1 and not modes:
        print("prototxt fmt: several files need --check, --diff or --in-place", file=sys.stderr)
        return EXIT_USAGE
    if args.in_place and "-" in args.files:
        print("prototxt fmt: --in-place cannot rewrite standard input", file=sys.stderr)
        return EXIT_USAGE
    changed = 0
    failed = 0
    for path in args.files:
        display = _display(path)
        try:
            original = decode_text(_reader(path))
            formatted = format_text(original, display)
        except PrototxtError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        if not modes:
            sys.stdout.buffer.write(encode_text(formatted))
            continue
        if formatted == original:
            continue
        changed += 1
        if args.diff:
            diff = difflib.unified_diff(original.splitlines(keepends=True),
                                        formatted.splitlines(keepends=True),
                                        fromfile=f"{display} (original)",
                                        tofile=f"{display} (formatted)")
            no_newline = "\n\\ No newline at end of file\n"
            text = "".join(line if line.endswith("\n") else line + no_newline for line in diff)
            sys.stdout.buffer.write(encode_text(text))
        if args.in_place:
            atomic_write(path, formatted)
            print(f"reformatted {display}", file=sys.stderr)
        elif args.check:
            print(f"would reformat {display}", file=sys.stderr)
    if args.check:
        total = len(args.files) - failed
        if changed:
            print(f"{changed} of {_plural(total, 'file')} would be reformatted", file=sys.stderr)
        else:
            print(f"{_plural(total, 'file')} already formatted", file=sys.stderr)
    if failed:
        return EXIT_USAGE
    if changed and (args.check or args.diff):
        return EXIT_FINDINGS
    return EXIT_OK


# -- weights -----------------------------------------------------------------------------------

def cmd_weights(args: argparse.Namespace) -> int:
    from .schema.caffemodel import summarize

    rows = summarize(args.file)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    headers = ["layer", "type", "blob", "shape", "dtype", "count", "sha256"]
    table = [[str(row.get("layer", "")), str(row.get("type", "")), str(row.get("blob", "")),
              "x".join(str(d) for d in row.get("shape", ())) or "scalar", str(row.get("dtype", "")),
              f"{row.get('count', 0):,}", str(row.get("checksum", ""))] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in table]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    layers = len({(row.get("layer"), row.get("type")) for row in rows})
    total = sum(int(row.get("count", 0)) for row in rows)
    print(f"{_plural(layers, 'layer')} with blobs, {_plural(len(rows), 'blob')}, "
          f"{total:,} values")
    return EXIT_OK


# -- the parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prototxt",
        description="Check, format and inspect Caffe .prototxt nets, solvers and .caffemodel "
                    "weights.",
        formatter_class=_Formatter,
        epilog="examples:\n"
               "  prototxt check train_val.prototxt solver.prototxt\n"
               "  prototxt fmt --diff deploy.prototxt\n"
               "  prototxt weights model.caffemodel\n\n"
               "Run 'prototxt COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"prototxt-tools {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser(
        "check", formatter_class=_Formatter,
        help="parse files and validate them against Caffe's schema",
        description="Parse each file and validate it against Caffe's schema: syntax, unknown "
                    "fields, value types, enum values, integer ranges, fields given twice. "
                    "Text files are read as nets or solvers (decided from their fields unless "
                    "--kind says); .caffemodel, .binaryproto and .solverstate files are checked "
                    "as binary protobuf.\n\n"
                    "exit status: 0 no errors, 1 errors found (or warnings with --strict), "
                    "2 a file could not be read",
        epilog="examples:\n"
               "  prototxt check models/*/train_val.prototxt\n"
               "  prototxt check --kind solver solver.prototxt\n"
               "  prototxt check --strict --quiet deploy.prototxt weights.caffemodel",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="files to check ('-' = stdin)")
    check.add_argument("--kind", choices=["net", "solver"],
                       help="read text files as this message (default: decide per file)")
    check.add_argument("--strict", action="store_true", help="warnings count as findings too")
    check.add_argument("-q", "--quiet", action="store_true",
                       help="print errors only, no warnings and no summary")
    check.set_defaults(handler=cmd_check)

    fmt = commands.add_parser(
        "fmt", formatter_class=_Formatter,
        help="print files in canonical layout (comments kept)",
        description="Format files canonically: two-space indentation, one field per line, "
                    "'name: value' and 'name {', double-quoted strings, lists written as "
                    "repeated fields. Comments and blank lines between fields are kept; the "
                    "result reads back as the same message. Prints to standard output unless "
                    "--check, --diff or --in-place is given.\n\n"
                    "exit status: 0 done (or nothing to change), 1 a file would change (--check, "
                    "--diff), 2 a file could not be read or parsed",
        epilog="examples:\n"
               "  prototxt fmt deploy.prototxt > deploy.formatted.prototxt\n"
               "  prototxt fmt --check models/*.prototxt\n"
               "  prototxt fmt --in-place train_val.prototxt solver.prototxt",
    )
    fmt.add_argument("files", nargs="+", metavar="FILE", help="files to format ('-' = stdin)")
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="only report files that would change")
    mode.add_argument("--diff", action="store_true", help="print a unified diff of the changes")
    mode.add_argument("--in-place", action="store_true",
                      help="rewrite changed files (atomically)")
    fmt.set_defaults(handler=cmd_fmt)

    weights = commands.add_parser(
        "weights", formatter_class=_Formatter,
        help="list the blobs of a .caffemodel or .binaryproto",
        description="List every layer's blobs in a .caffemodel (V2, V1 or V0 layers) or the "
                    "blob of a .binaryproto: shape, dtype, number of values and a checksum "
                    "(first 16 hex digits of the SHA-256 of the stored little-endian data).",
        epilog="examples:\n"
               "  prototxt weights bvlc_alexnet.caffemodel\n"
               "  prototxt weights --format json mean.binaryproto",
    )
    weights.add_argument("file", metavar="FILE")
    weights.add_argument("--format", choices=["text", "json"], default="text")
    weights.set_defaults(handler=cmd_weights)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except PrototxtError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - a bug: one line, not a traceback
        if os.environ.get("PROTOTXT_DEBUG"):
            raise
        print(f"prototxt: internal error: {type(exc).__name__}: {exc} "
              f"(set PROTOTXT_DEBUG=1 for a traceback; please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
