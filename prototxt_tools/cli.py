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
from typing import Any, Callable, Optional, Sequence

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


def _plural(count: int, word: str, plural: Optional[str] = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


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


# -- lint --------------------------------------------------------------------------------------

def _codes(values: Optional[Sequence[str]]) -> list:
    codes: list[str] = []
    for value in values or ():
        codes.extend(part.strip() for part in value.split(",") if part.strip())
    return codes


def parse_input_shape(text: str) -> tuple:
    """``NAME=N,C,H,W`` -> ("NAME", (N, C, H, W))."""
    name, _, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        shape = ()
    if not name or not shape or any(d < 0 for d in shape):
        raise PrototxtError(f"--input-shape expects NAME=N,C,H,W, got {text!r}")
    return name, shape


def _lint_setup(args: argparse.Namespace) -> tuple:
    from pathlib import Path

    from .layers.base import TEST, TRAIN
    from .lint.config import load_config, parse_option
    from .lint.engine import LintOptions

    config = load_config(Path(args.config) if args.config else None)
    options: dict = {}
    for text in args.option or ():
        code, name, value = parse_option(text)
        options.setdefault(code, {})[name] = value
    config = config.with_overrides(select=_codes(args.select), ignore=_codes(args.ignore),
                                   extend_select=_codes(args.extend_select),
                                   fail_on=args.fail_on, options=options)
    phases = {"TRAIN": (TRAIN,), "TEST": (TEST,), None: (TRAIN, TEST)}[args.phase]
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    lint_options = LintOptions(phases=phases, level=args.level, stages=tuple(args.stage or ()),
                               input_shapes=shapes, kind=args.kind)
    return config, lint_options


def cmd_lint(args: argparse.Namespace) -> int:
    from .fileio import atomic_write, decode_text, encode_text
    from .lint.engine import fix_text, lint_text
    from .lint.reporters import render

    config, options = _lint_setup(args)
    findings = []
    unreadable = 0
    changed = 0
    fixed_count = 0
    for path in args.files:
        display = _display(path)
        try:
            original = decode_text(_reader(path))
        except PrototxtError as exc:
            print(exc, file=sys.stderr)
            unreadable += 1
            continue
        if args.fix or args.diff or args.unsafe_fixes:
            outcome = fix_text(original, display, config, options, unsafe=args.unsafe_fixes)
            result = outcome.result
            if not outcome.converged:
                print(f"{display}: fixes did not settle after {outcome.rounds} rounds; "
                      f"stopped (please report)", file=sys.stderr)
            if outcome.text != original:
                changed += 1
                fixed_count += len(outcome.applied)
                if args.diff:
                    diff = difflib.unified_diff(original.splitlines(keepends=True),
                                                outcome.text.splitlines(keepends=True),
                                                fromfile=f"{display} (original)",
                                                tofile=f"{display} (fixed)")
                    sys.stdout.buffer.write(encode_text("".join(
                        line if line.endswith("\n") else line + "\n" for line in diff)))
                elif path != "-":
                    atomic_write(path, outcome.text)
                else:
                    sys.stdout.buffer.write(encode_text(outcome.text))
        else:
            result = lint_text(original, display, config, options)
        for code, message in result.internal_errors:
            print(f"prototxt: internal error in rule {code} on {display}: {message} "
                  f"(please report)", file=sys.stderr)
        findings.extend(result.findings)
    if not args.diff or args.format != "text":
        output = render(findings, args.format)
        if output:
            sys.stdout.buffer.write(encode_text(output))
    failing = [f for f in findings if SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[config.fail_on]]
    if args.format == "text" and not args.quiet and unreadable < len(args.files):
        _lint_summary(findings, changed, fixed_count, args)
    if unreadable:
        return EXIT_USAGE
    if failing or (args.diff and changed):
        return EXIT_FINDINGS
    return EXIT_OK


SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2}


def _lint_summary(findings: list, changed: int, fixed: int, args: argparse.Namespace) -> None:
    counts = {level: sum(1 for f in findings if f.severity == level)
              for level in ("error", "warning", "info")}
    safe = sum(1 for f in findings if f.fix is not None and f.fix.safe)
    unsafe = sum(1 for f in findings if f.fix is not None and not f.fix.safe)
    parts = []
    if args.fix and fixed:
        parts.append(f"fixed {_plural(fixed, 'finding')} in {_plural(changed, 'file')}")
    if findings:
        parts.append(f"{_plural(len(findings), 'finding')} "
                     f"({counts['error']} error{'s' if counts['error'] != 1 else ''}, "
                     f"{counts['warning']} warning{'s' if counts['warning'] != 1 else ''}, "
                     f"{counts['info']} info)")
    else:
        parts.append("no findings")
    if safe:
        parts.append(f"{safe} fixable with --fix")
    if unsafe:
        parts.append(f"{unsafe} more with --unsafe-fixes")
    print("; ".join(parts), file=sys.stderr)


# -- rules -------------------------------------------------------------------------------------

def cmd_rules(args: argparse.Namespace) -> int:
    from .lint.docs import rule_text
    from .lint.rule import all_rules, get_rule

    if args.code:
        rule = get_rule(args.code)
        if rule is None:
            known = [r.code for r in all_rules()]
            hint = difflib.get_close_matches(args.code.upper(), known, n=1)
            suffix = f"; did you mean {hint[0]}?" if hint else ""
            print(f"prototxt rules: no rule {args.code!r}{suffix}", file=sys.stderr)
            return EXIT_USAGE
        print(rule_text(rule))
        return EXIT_OK
    rules = all_rules()
    if args.format == "json":
        print(json.dumps([{"code": r.code, "name": r.name, "severity": r.severity,
                           "default": r.enabled_by_default, "summary": r.summary,
                           "fix": bool(r.fix_description)} for r in rules], indent=2))
        return EXIT_OK
    width = max(len(r.name) for r in rules)
    for rule in rules:
        default = " " if rule.enabled_by_default else "-"
        fix = "*" if rule.fix_description else " "
        print(f"{rule.code:<6} {default}{fix} {rule.name:<{width}}  {rule.severity:<7}  "
              f"{rule.summary}")
    print("\n'-': off by default (turn on with --extend-select); '*': has a fix. "
          "'prototxt rules CODE' shows a rule's documentation.")
    return EXIT_OK


# -- upgrade -----------------------------------------------------------------------------------

def cmd_upgrade(args: argparse.Namespace) -> int:
    from .fileio import atomic_write, encode_text
    from .net.upgrade import upgrade_text
    from .syntax.parser import parse

    display = _display(args.file)
    document = parse(_reader(args.file), display)
    result = upgrade_text(document)
    for issue in [*result.errors, *result.notes]:
        print(issue, file=sys.stderr)
    if result.errors:
        return EXIT_FINDINGS
    if args.output:
        atomic_write(args.output, result.text)
        steps = ", ".join(result.steps) or "nothing to upgrade"
        print(f"wrote {args.output} ({steps})", file=sys.stderr)
    elif args.in_place:
        if result.changed:
            atomic_write(args.file, result.text)
        print(f"{display}: {', '.join(result.steps) or 'nothing to upgrade'}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(encode_text(result.text))
    return EXIT_OK


# -- run / init-weights ------------------------------------------------------------------------

def _phase(name: Optional[str]) -> int:
    from .layers.base import TEST, TRAIN

    return TRAIN if name == "TRAIN" else TEST


def _load_plugins(args: argparse.Namespace) -> None:
    from .run.plugins import load_plugin

    for path in args.plugin or ():
        load_plugin(path)


def _input_arrays(executor: Any, specs: Sequence[str], seed: int) -> tuple:
    """{name: array} from --input NAME=FILE.npy|random|zeros|randint:K; unnamed inputs get
    random values (labels: zeros). Returns (arrays, [descriptions])."""
    import numpy as np

    declared = executor.input_shapes()
    given: dict = {}
    for text in specs:
        name, sep, source = text.partition("=")
        if not sep or not name or not source:
            raise PrototxtError(f"--input expects NAME=FILE.npy, NAME=random, NAME=zeros or "
                                f"NAME=randint:K, got {text!r}")
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise PrototxtError(f"--input {name}: the net has no input '{name}' (inputs: {known})")
        given[name] = source
    rng = np.random.default_rng(seed)
    arrays, notes = {}, []
    labels = set(_label_inputs(executor))
    for name, shape in declared.items():
        source = given.get(name) or ("zeros" if name in labels else "random")
        if source.endswith(".npy"):
            try:
                arrays[name] = np.load(source, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise PrototxtError(f"cannot read the array: {exc}", source) from None
            notes.append(f"{name} = {source} {arrays[name].shape}")
            continue
        if shape is None or any(d is None for d in shape):
            raise PrototxtError(f"input '{name}' has an unknown shape {shape}; give it with "
                                f"--input-shape {name}=N,C,H,W or pass --input {name}=FILE.npy")
        if source == "random":
            arrays[name] = rng.standard_normal(shape).astype(np.float32)
        elif source == "zeros":
            arrays[name] = np.zeros(shape, np.float32)
        elif source.startswith("randint:") and source[8:].isdigit():
            arrays[name] = rng.integers(0, int(source[8:]), shape).astype(np.float32)
        else:
            raise PrototxtError(f"--input {name}={source}: expected a .npy file, random, zeros "
                                f"or randint:K")
        if name not in given:
            notes.append(f"{name} = {source} {tuple(shape)} (no --input given)")
    return arrays, notes


def _label_inputs(executor: Any) -> list:
    """Tops after the first of data layers (labels, by Caffe's convention)."""
    names = []
    for layer in executor.view.layers:
        if layer.spec is not None and layer.spec.is_data and layer.type != "Input":
            names.extend(layer.tops[1:])
    return names


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from .fileio import atomic_write_stream
    from .run.executor import Executor

    _load_plugins(args)
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    weights = args.weights
    executor = Executor(args.net, weights, phase=_phase(args.phase), seed=args.seed,
                        dtype=np.float64 if args.double else np.float32, input_shapes=shapes,
                        init_missing=args.init_missing)
    if weights is None:
        print(f"weights: random (init-weights, seed {args.seed})", file=sys.stderr)
    arrays, notes = _input_arrays(executor, args.input or (), args.seed)
    for note in notes:
        print(f"input: {note}", file=sys.stderr)
    outputs = executor.forward(arrays, keep="all" if args.blobs == "all" else ())
    width = max([len(name) for name in outputs] + [4])
    print(f"{'blob':<{width}}  {'shape':<18} {'min':>11} {'max':>11} {'mean':>11} {'std':>11}")
    for name, array in outputs.items():
        shape = "x".join(str(d) for d in array.shape) or "scalar"
        if array.size:
            stats = [float(array.min()), float(array.max()), float(array.mean()),
                     float(array.std())]
            numbers = " ".join(f"{value:11.5g}" for value in stats)
        else:
            numbers = f"{'(empty)':>11}"
        print(f"{name:<{width}}  {shape:<18} {numbers}")
    if args.output:
        atomic_write_stream(args.output, lambda handle: np.savez(handle, **outputs))
        print(f"wrote {args.output} ({_plural(len(outputs), 'array')})", file=sys.stderr)
    return EXIT_OK


def cmd_init_weights(args: argparse.Namespace) -> int:
    from .run.executor import load_net
    from .run.fillers import init_weights
    from .schema.caffemodel import write_weights

    _load_plugins(args)
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    net = load_net(args.net, shapes)
    layers = init_weights(net, args.seed)
    write_weights(layers, args.output)
    total = sum(array.size for _, _, arrays in layers for array in arrays)
    print(f"wrote {args.output}: {_plural(len(layers), 'layer')} with blobs, {total:,} values "
          f"(seed {args.seed})", file=sys.stderr)
    return EXIT_OK


# -- rewrites ----------------------------------------------------------------------------------

def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _refuse_overwrite(source: str, *outputs: Optional[str]) -> None:
    """Rewrites never replace their input: a mistake there loses the user's file."""
    for output in outputs:
        if output and source != "-" and _same_file(source, output):
            raise PrototxtError(f"refusing to overwrite the input {source}; write the result "
                                f"to another file")


def _emit_text(text: str, output: Optional[str]) -> None:
    from .fileio import atomic_write, encode_text

    if output:
        atomic_write(output, text)
    else:
        sys.stdout.buffer.write(encode_text(text))


def _shapes_text(shapes: dict) -> str:
    return ", ".join(f"{name}: {'x'.join(str(d) for d in shape)}" for name, shape in shapes.items())


def cmd_deploy(args: argparse.Namespace) -> int:
    from .rewrite.deploy import deploy

    _refuse_overwrite(args.file, args.output)
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    result = deploy(_reader(args.file), input_shapes=shapes, keep_dropout=args.keep_dropout,
                    softmax=not args.no_softmax, prob_top=args.prob_top,
                    stages=args.stage or (), level=args.level, path=_display(args.file))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    _emit_text(result.text, args.output)
    where = f"wrote {args.output}" if args.output else _display(args.file)
    inputs = f"; inputs {_shapes_text(result.inputs)}" if result.inputs else ""
    state = "deploy net" if result.changed else "unchanged"
    print(f"{where}: {state}{inputs}", file=sys.stderr)
    return EXIT_OK


def cmd_freeze_bn(args: argparse.Namespace) -> int:
    from .rewrite.freeze_bn import freeze_bn

    _refuse_overwrite(args.file, args.output)
    result = freeze_bn(_reader(args.file), freeze_scale=args.freeze_scale,
                       stages=args.stage or (), level=args.level, path=_display(args.file))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    _emit_text(result.text, args.output)
    summary = f"froze {_plural(len(result.frozen), 'BatchNorm layer')}"
    if args.freeze_scale:
        summary += f" and {_plural(len(result.scales), 'Scale layer')}"
    where = f"wrote {args.output}: " if args.output else ""
    print(where + summary, file=sys.stderr)
    return EXIT_OK


def cmd_fold_bn(args: argparse.Namespace) -> int:
    from .fileio import atomic_write
    from .rewrite.fold_bn import fold_bn
    from .schema.caffemodel import write_weights

    _refuse_overwrite(args.file, args.output, args.weights_out)
    _refuse_overwrite(args.weights, args.output, args.weights_out)
    if _same_file(args.output, args.weights_out):
        raise PrototxtError("-o and --weights-out name the same file")
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    result = fold_bn(_reader(args.file), args.weights, phase=args.phase,
                     tolerance=args.tolerance, seed=args.seed, check=not args.no_check,
                     input_shapes=shapes, stages=args.stage or (), level=args.level,
                     path=_display(args.file), timing_runs=0 if args.no_check else 3)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    write_weights(result.weights, args.weights_out)
    try:
        atomic_write(args.output, result.text)
    except BaseException:
        os.unlink(args.weights_out)  # both outputs or neither
        raise
    into, replaced = len(result.into_producers), len(result.replaced)
    print(f"folded {_plural(len(result.folded), 'BatchNorm layer')}: {into} into the layer "
          f"before, {replaced} replaced by one Scale")
    if result.max_rel is not None:
        print(f"folded vs original on random inputs ({len(result.compared)} blobs compared): "
              f"max abs difference {result.max_abs:.3g}, max relative {result.max_rel:.3g} "
              f"(tolerance {args.tolerance:g})")
    if result.forward_seconds:
        before, after = result.forward_seconds
        print(f"executor forward time: original {before * 1000:.1f} ms, folded "
              f"{after * 1000:.1f} ms ({after / before:.2f}x)")
    print(f"wrote {args.output} and {args.weights_out}", file=sys.stderr)
    return EXIT_OK


def cmd_to_pytorch(args: argparse.Namespace) -> int:
    from .export.pytorch import to_pytorch, verify
    from .fileio import atomic_write

    _load_plugins(args)
    _refuse_overwrite(args.net, args.output, args.state_dict)
    if args.weights:
        _refuse_overwrite(args.weights, args.output, args.state_dict)
    if args.state_dict and not args.weights:
        raise PrototxtError("--state-dict needs --weights (without weights the module "
                            "initialises its parameters randomly)")
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    state_path = args.state_dict or (os.path.splitext(args.output)[0] + ".pt"
                                     if args.weights else None)
    if state_path and _same_file(state_path, args.output):
        raise PrototxtError("-o and --state-dict name the same file")
    outputs = [name for name in args.outputs.split(",") if name] if args.outputs else None
    export = to_pytorch(args.net, args.weights, class_name=args.class_name,
                        phase=_phase(args.phase), input_shapes=shapes, fold_bn=args.fold_bn,
                        stages=args.stage or (), outputs=outputs)
    for note in export.notes:
        print(f"note: {note}", file=sys.stderr)
    check = args.verify if args.verify is not None else _torch_available()
    if args.verify and not _torch_available():
        raise PrototxtError("--verify needs PyTorch (pip install torch)")
    worst = 0.0
    if check:
        checked, weights = export, args.weights
        if args.weights is None:  # compare on init-weights values, converted the same way
            from .run.executor import load_net
            from .run.fillers import init_weights

            net = load_net(args.net, shapes)
            weights = {name: arrays for name, _, arrays in init_weights(net, args.seed)}
            checked = to_pytorch(args.net, weights, class_name=args.class_name,
                                 phase=_phase(args.phase), input_shapes=shapes,
                                 stages=args.stage or (), outputs=outputs)
        errors = verify(checked, _verify_net(args, shapes), weights, seed=args.seed,
                        input_shapes=shapes, phase=_phase(args.phase))
        for name, (absolute, relative) in errors.items():
            print(f"verify {name}: max abs error {absolute:.3g}, max relative {relative:.3g}")
            worst = max(worst, relative)
        if worst > args.tolerance:
            print(f"the PyTorch module differs from the executor by {worst:.3g} (relative), "
                  f"over the tolerance {args.tolerance:g}; nothing written", file=sys.stderr)
            return EXIT_FINDINGS
    if state_path and export.state is not None:
        _save_state(export.state, state_path)
    atomic_write(args.output, export.source)
    lines = export.source.count("\n")
    values = sum(int(value.size) for value in (export.state or {}).values())
    written = f"wrote {args.output} (class {export.class_name}, " \
              f"{_plural(len(export.names), 'submodule')}, " \
              f"{lines} lines)"
    if state_path and export.state is not None:
        written += f" and {state_path} ({values:,} values)"
    print(written, file=sys.stderr)
    return EXIT_OK


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _verify_net(args: argparse.Namespace, shapes: dict) -> Any:
    """The net the executor runs for --verify: the original one, also with --fold-bn (so the
    check covers the folding too)."""
    from .run.executor import load_net

    return load_net(args.net, shapes)


def _save_state(state: dict, path: str) -> None:
    """A state_dict of float32 tensors, loadable with torch.load(path, weights_only=True);
    written atomically, tensor by tensor (no second copy of the weights in memory)."""
    import warnings

    import torch

    from .fileio import atomic_write_stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only (memory-mapped) arrays
        tensors = {key: torch.from_numpy(value) for key, value in state.items()}
    atomic_write_stream(path, lambda handle: torch.save(tensors, handle))


class _Progress:
    """A one-line progress bar on standard error, drawn only when it is a terminal and the
    run is long enough to need one."""

    def __init__(self, label: str, stream: Any = None, min_seconds: float = 0.5):
        import time

        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.min_seconds = min_seconds
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        import time

        elapsed = time.monotonic() - self.start
        if not self.enabled or (elapsed < self.min_seconds and done < total):
            return
        width = 30
        filled = int(width * done / max(total, 1))
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{done}/{total} {elapsed:5.1f}s, ~{left:4.0f}s left ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def cmd_bn_stats(args: argparse.Namespace) -> int:
    import math

    from .rewrite.bn_stats import bn_stats
    from .schema.caffemodel import write_weights

    _refuse_overwrite(args.weights, args.output)
    _refuse_overwrite(args.file, args.output)
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    progress = _Progress("bn-stats")
    try:
        result = bn_stats(args.file, args.weights, args.data, iterations=args.iterations,
                          mode=args.mode, decay=args.decay, batch_size=args.batch_size,
                          seed=args.seed, input_shapes=shapes, stages=args.stage or (),
                          level=args.level, progress=progress)
    finally:
        progress.close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    write_weights(result.weights, args.output)
    print(f"{args.mode} statistics of {_plural(len(result.layers), 'BatchNorm layer')} from "
          f"{_plural(result.batches, 'batch', 'batches')} ({result.images} images) of "
          f"{result.source}")
    if args.verbose:
        width = max(len(name) for name in result.layers)
        print(f"{'layer':<{width}}  {'max |d mean|':>12}  {'max rel d var':>13}")
        for name in result.layers:
            mean_change, var_change = result.changes[name]
            cells = ["-" if math.isnan(v) else f"{v:.4g}" for v in (mean_change, var_change)]
            print(f"{name:<{width}}  {cells[0]:>12}  {cells[1]:>13}")
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


# -- weights -----------------------------------------------------------------------------------

def cmd_summary(args: argparse.Namespace) -> int:
    from .fileio import read_bytes
    from .net.model import Net
    from .schema.binding import bind, detect_kind
    from .summary import FORMATS, summarize
    from .syntax.parser import parse

    _load_plugins(args)
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    document = parse(read_bytes(args.net), args.net)
    if detect_kind(document) != "net":
        raise PrototxtError("this is a solver, not a net: summarise the net it names",
                            args.net)
    bound = bind(document, "net")
    if bound.errors:  # a net Caffe would not read is not summarised
        raise PrototxtError.from_diagnostics(bound.errors)
    net = Net.from_document(document, bound.message, input_shapes=shapes)
    view = net.view(_phase(args.phase), None, tuple(args.stage or ()))
    failing = [(layer, problem) for layer, problem in view.shapes.problems
               + view.shapes.count_problems if problem.severity == "error"]
    if failing:  # Caffe would stop at set-up: no counts for a net that cannot run
        layer, problem = failing[0]
        raise PrototxtError.at(layer.node, f"layer '{layer.name}' ({layer.type}): "
                                           f"{problem.message}").with_path(args.net)
    summary = summarize(net, _phase(args.phase), stages=args.stage or ())
    sys.stdout.write(FORMATS[args.format](summary))
    return EXIT_OK


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
        description="Check, lint, format, upgrade, run and rewrite Caffe .prototxt nets, "
                    "solvers and .caffemodel weights.",
        formatter_class=_Formatter,
        epilog="examples:\n"
               "  prototxt check train_val.prototxt solver.prototxt\n"
               "  prototxt lint train_val.prototxt\n"
               "  prototxt fmt --diff deploy.prototxt\n"
               "  prototxt weights model.caffemodel\n"
               "  prototxt deploy train_val.prototxt -o deploy.prototxt\n"
               "  prototxt fold-bn deploy.prototxt --weights w.caffemodel -o folded.prototxt "
               "--weights-out folded.caffemodel\n\n"
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

    lint = commands.add_parser(
        "lint", formatter_class=_Formatter,
        help="find what Caffe would fail on or silently get wrong (BatchNorm above all)",
        description="Lint nets and solvers: BatchNorm mistakes (BN), wiring Caffe rejects per "
                    "phase (G), training layers left in deploy nets (D), Caffe's layer set-up "
                    "checks with shapes inferred (L) and schema problems (S). 'prototxt rules' "
                    "lists the rules. Settings come from [tool.prototxt-tools.lint] in "
                    "pyproject.toml or [lint] in .prototxt-tools.toml, then the options below.\n\n"
                    "exit status: 0 no findings at or above --fail-on, 1 such findings (or, "
                    "with --diff, fixes to apply), 2 usage errors or unreadable files",
        epilog="examples:\n"
               "  prototxt lint train_val.prototxt deploy.prototxt\n"
               "  prototxt lint --select BN --fail-on warning models/*.prototxt\n"
               "  prototxt lint --fix train_val.prototxt\n"
               "  prototxt lint --diff --unsafe-fixes train_val.prototxt\n"
               "  prototxt lint --phase TRAIN --input-shape data=8,3,224,224 net.prototxt\n"
               "  prototxt lint --format sarif models/*.prototxt > lint.sarif",
    )
    lint.add_argument("files", nargs="+", metavar="FILE", help="files to lint ('-' = stdin)")
    lint.add_argument("--select", action="append", metavar="CODES",
                      help="only these rules (codes or prefixes, comma-separated)")
    lint.add_argument("--extend-select", action="append", metavar="CODES",
                      help="add rules to the selection (e.g. BN009, off by default)")
    lint.add_argument("--ignore", action="append", metavar="CODES", help="skip these rules")
    lint.add_argument("--fail-on", choices=["error", "warning", "info"],
                      help="lowest severity that makes the exit status 1 (default: error)")
    lint.add_argument("--format", choices=["text", "json", "sarif", "github"], default="text")
    lint.add_argument("--fix", action="store_true",
                      help="apply safe fixes to the files (atomically), then report the rest")
    lint.add_argument("--unsafe-fixes", action="store_true",
                      help="also apply fixes marked unsafe (implies --fix)")
    lint.add_argument("--diff", action="store_true",
                      help="print the fixes as a diff instead of writing them")
    lint.add_argument("--phase", choices=["TRAIN", "TEST"],
                      help="lint only the net of this phase (default: both)")
    lint.add_argument("--stage", action="append", metavar="NAME",
                      help="add a stage to the net state (repeatable)")
    lint.add_argument("--level", type=int, help="the net state's level (default: the file's)")
    lint.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                      help="shape of an input or data top, for shape inference (repeatable)")
    lint.add_argument("--kind", choices=["net", "solver"],
                      help="read files as this message (default: decide per file)")
    lint.add_argument("--config", metavar="FILE", help="settings file (default: search upwards)")
    lint.add_argument("--option", action="append", metavar="CODE.NAME=VALUE",
                      help="a rule option, e.g. BN006.threshold=32 (repeatable)")
    lint.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    lint.set_defaults(handler=cmd_lint)

    rules = commands.add_parser(
        "rules", formatter_class=_Formatter,
        help="list the lint rules, or show one rule's documentation",
        description="Without a code: every rule with its code, name, default severity and "
                    "summary. With a code: the rule's documentation (what it does, why it "
                    "matters, an example, the fix and whether it is safe, its options).",
        epilog="examples:\n"
               "  prototxt rules\n"
               "  prototxt rules BN001\n"
               "  prototxt rules --format json",
    )
    rules.add_argument("code", nargs="?", metavar="CODE")
    rules.add_argument("--format", choices=["text", "json"], default="text")
    rules.set_defaults(handler=cmd_rules)

    upgrade = commands.add_parser(
        "upgrade", formatter_class=_Formatter,
        help="rewrite a V0/V1 net (and input: fields) in today's format, comments kept",
        description="Upgrade a net as Caffe does when it loads one: V0 layers to V1, data "
                    "transformation fields into transform_param, V1 layers to V2 'layer' "
                    "blocks, input:/input_dim:/input_shape: fields to an Input layer, and "
                    "BatchNorm statistics to lr_mult 0. The result is canonical V2 text; "
                    "comments stay with the layer they belonged to. Prints to standard output "
                    "unless -o or --in-place is given; a file needing no upgrade comes back "
                    "unchanged.\n\n"
                    "exit status: 0 upgraded (or nothing to do), 1 Caffe's upgrade would fail, "
                    "2 usage errors or unreadable input",
        epilog="examples:\n"
               "  prototxt upgrade old_train_val.prototxt -o train_val.prototxt\n"
               "  prototxt upgrade --in-place lenet_v1.prototxt",
    )
    upgrade.add_argument("file", metavar="FILE")
    target = upgrade.add_mutually_exclusive_group()
    target.add_argument("-o", "--output", metavar="OUT", help="write the result here (atomically)")
    target.add_argument("--in-place", action="store_true", help="rewrite FILE (atomically)")
    upgrade.set_defaults(handler=cmd_upgrade)

    run = commands.add_parser(
        "run", formatter_class=_Formatter,
        help="run a net forward in NumPy with Caffe's semantics",
        description="Run a forward pass with Caffe's exact semantics (the phase's layers, "
                    "weights matched by layer name) and print each output blob's shape and "
                    "statistics. Inputs: --input NAME=FILE.npy, NAME=random, NAME=zeros or "
                    "NAME=randint:K; inputs not given are random (labels zeros). Without "
                    "--weights the net runs with init-weights values from --seed.\n\n"
                    "exit status: 0 done, 2 a file could not be read or the net cannot run",
        epilog="examples:\n"
               "  prototxt run deploy.prototxt --weights model.caffemodel "
               "--input data=image.npy -o out.npz\n"
               "  prototxt run train_val.prototxt --phase TRAIN --input-shape data=8,3,32,32 "
               "--input label=randint:10\n"
               "  prototxt run deploy.prototxt --blobs all -o blobs.npz",
    )
    run.add_argument("net", metavar="NET")
    run.add_argument("--weights", metavar="W.caffemodel")
    run.add_argument("--input", action="append", metavar="NAME=SOURCE")
    run.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                     help="shape of an input the net does not state (repeatable)")
    run.add_argument("--phase", choices=["TEST", "TRAIN"], default="TEST")
    run.add_argument("--seed", type=int, default=0, help="for random inputs, weights, Dropout")
    run.add_argument("--blobs", choices=["outputs", "all"], default="outputs",
                     help="print and save the net's outputs (default) or every blob")
    run.add_argument("--double", action="store_true", help="compute in float64")
    run.add_argument("--init-missing", action="store_true",
                     help="give layers the weights lack init-weights values (Caffe keeps its "
                          "fillers silently)")
    run.add_argument("--plugin", action="append", metavar="FILE.py",
                     help="a Python file registering forward passes for fork layers")
    run.add_argument("-o", "--output", metavar="OUT.npz", help="save the arrays (atomically)")
    run.set_defaults(handler=cmd_run)

    init = commands.add_parser(
        "init-weights", formatter_class=_Formatter,
        help="write deterministic random weights for a net",
        description="Write a .caffemodel with a blob of the right shape for every layer that "
                    "has learnable blobs: the layer's fillers when given, else random values "
                    "(He-style weights, small biases, scales near 1); BatchNorm statistics "
                    "random with a positive variance and scale factor 1. The same --seed "
                    "always gives the same weights; each layer's values depend only on the "
                    "seed and its name.",
        epilog="examples:\n"
               "  prototxt init-weights deploy.prototxt -o random.caffemodel --seed 1\n"
               "  prototxt init-weights train_val.prototxt --input-shape data=1,3,224,224 "
               "-o w.caffemodel",
    )
    init.add_argument("net", metavar="NET")
    init.add_argument("-o", "--output", required=True, metavar="W.caffemodel")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W")
    init.add_argument("--plugin", action="append", metavar="FILE.py")
    init.set_defaults(handler=cmd_init_weights)

    deploy = commands.add_parser(
        "deploy", formatter_class=_Formatter,
        help="derive the deploy net from a train_val net",
        description="Write the inference net of a train_val: the TEST-phase layers (Caffe's "
                    "include/exclude filtering), data layers replaced by one Input layer per "
                    "top still used (batch 1; the shape from crop_size, new_height/new_width, "
                    "the mean values, or --input-shape), losses and Accuracy and Silence "
                    "removed with the branches only they used (labels, auxiliary heads), the "
                    "main SoftmaxWithLoss turned into a Softmax 'prob', Dropout removed, "
                    "BatchNorm's use_global_stats: false removed, learning-rate specs and "
                    "fillers stripped. Layer names stay, so the trained weights load. Comments "
                    "of what survives are kept; a deploy net comes back unchanged. Prints to "
                    "standard output unless -o is given.\n\n"
                    "exit status: 0 written, 2 the net cannot be read or an input shape cannot "
                    "be known",
        epilog="examples:\n"
               "  prototxt deploy train_val.prototxt -o deploy.prototxt\n"
               "  prototxt deploy lenet_train_test.prototxt --input-shape data=1,1,28,28 "
               "-o lenet.prototxt\n"
               "  prototxt deploy fcn_train.prototxt --no-softmax --input-shape "
               "data=1,3,500,500",
    )
    deploy.add_argument("file", metavar="TRAIN_VAL")
    deploy.add_argument("-o", "--output", metavar="DEPLOY",
                        help="write the deploy net here (atomically)")
    deploy.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                        help="shape of a data top (repeatable); default: from the data layer")
    deploy.add_argument("--keep-dropout", action="store_true",
                        help="keep Dropout layers (identity at TEST anyway)")
    deploy.add_argument("--no-softmax", action="store_true",
                        help="remove SoftmaxWithLoss instead of turning it into Softmax")
    deploy.add_argument("--prob-top", default="prob", metavar="NAME",
                        help="name of the Softmax layer and its top (default: prob)")
    deploy.add_argument("--stage", action="append", metavar="NAME",
                        help="a stage of the TEST net state (repeatable)")
    deploy.add_argument("--level", type=int, help="the TEST net state's level")
    deploy.set_defaults(handler=cmd_deploy)

    freeze = commands.add_parser(
        "freeze-bn", formatter_class=_Formatter,
        help="make BatchNorm use its stored statistics in TRAIN (fine-tuning, tiny batches)",
        description="For fine-tuning with batch size 1 or a few values per channel, where batch "
                    "statistics are noise: set use_global_stats: true on every BatchNorm that "
                    "runs in TRAIN, and with --freeze-scale lr_mult: 0 on the Scale layers "
                    "right after them. Nothing else changes. Prints to standard output unless "
                    "-o is given.",
        epilog="examples:\n"
               "  prototxt freeze-bn train_val.prototxt -o finetune.prototxt\n"
               "  prototxt freeze-bn --freeze-scale train_val.prototxt -o finetune.prototxt",
    )
    freeze.add_argument("file", metavar="TRAIN_VAL")
    freeze.add_argument("-o", "--output", metavar="OUT", help="write the net here (atomically)")
    freeze.add_argument("--freeze-scale", action="store_true",
                        help="also stop the Scale layers after BatchNorm from learning")
    freeze.add_argument("--stage", action="append", metavar="NAME",
                        help="a stage of the TRAIN net state (repeatable)")
    freeze.add_argument("--level", type=int, help="the TRAIN net state's level")
    freeze.set_defaults(handler=cmd_freeze_bn)

    fold = commands.add_parser(
        "fold-bn", formatter_class=_Formatter,
        help="fold BatchNorm (+ Scale) into the layer before it, weights included",
        description="Fold every BatchNorm, with the Scale (and Bias) right after it, into the "
                    "Convolution, Deconvolution or InnerProduct that feeds it when nothing "
                    "else reads that layer's output (groups, in-place chains and layers "
                    "without a bias handled); where no such layer can absorb it (after a ReLU, "
                    "a Concat, an Eltwise, an input) BatchNorm and Scale become one Scale "
                    "layer with a bias. Writes the new net (comments kept, layer names kept) "
                    "and the new weights, then runs both nets on random inputs: the largest "
                    "difference over every blob they share is printed, and over --tolerance "
                    "(relative to the blob's largest value) it is an error and nothing is "
                    "written. The executor's forward time of both nets is printed too.\n\n"
                    "exit status: 0 written, 2 unreadable input, missing weights, or a "
                    "difference over the tolerance",
        epilog="examples:\n"
               "  prototxt fold-bn deploy.prototxt --weights model.caffemodel "
               "-o folded.prototxt --weights-out folded.caffemodel\n"
               "  prototxt fold-bn train_val.prototxt --weights w.caffemodel --input-shape "
               "data=1,3,224,224 -o f.prototxt --weights-out f.caffemodel",
    )
    fold.add_argument("file", metavar="NET")
    fold.add_argument("--weights", required=True, metavar="W.caffemodel")
    fold.add_argument("-o", "--output", required=True, metavar="NET2")
    fold.add_argument("--weights-out", required=True, metavar="W2.caffemodel")
    fold.add_argument("--tolerance", type=float, default=1e-4,
                      help="largest relative difference accepted (default: 1e-4)")
    fold.add_argument("--phase", choices=["TEST", "TRAIN"], default="TEST",
                      help="the net state whose BatchNorm layers are folded (default: TEST)")
    fold.add_argument("--stage", action="append", metavar="NAME")
    fold.add_argument("--level", type=int)
    fold.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                      help="shape of a data top, for the check (repeatable)")
    fold.add_argument("--seed", type=int, default=0, help="for the check's random inputs")
    fold.add_argument("--no-check", action="store_true",
                      help="skip running both nets (e.g. nets with Python layers)")
    fold.set_defaults(handler=cmd_fold_bn)

    torch_cmd = commands.add_parser(
        "to-pytorch", formatter_class=_Formatter,
        help="write the net as PyTorch code (an nn.Module) plus a state_dict, verified",
        description="Write a standalone Python module (it imports only torch) defining one "
                    "nn.Module: submodules named after the Caffe layers, forward as straight-"
                    "line code in the net's order computing what Caffe computes at TEST "
                    "(ceil-mode pooling with Caffe's rule, AVE divisors, LRN, BatchNorm from "
                    "its three blobs merged with the Scale after it, ...). With --weights the "
                    "state_dict goes to --state-dict (default: next to -o, .pt), loadable with "
                    "torch.load(path, weights_only=True); without, the module initialises "
                    "randomly. --verify (the default when torch is installed) runs the executor "
                    "and the module on the same random input and weights (init-weights values "
                    "from --seed without --weights) and prints each output's error; over "
                    "--tolerance nothing is written and the exit status is 1. Layers PyTorch "
                    "cannot express are listed in one error (a --plugin may provide them). "
                    "The module works with torch.export.export and torch.onnx.export "
                    "(dynamo=True).\n\n"
                    "exit status: 0 written, 1 verification over the tolerance, 2 unreadable "
                    "input or layers that cannot be exported",
        epilog="examples:\n"
               "  prototxt to-pytorch deploy.prototxt --weights model.caffemodel -o model.py\n"
               "  prototxt to-pytorch deploy.prototxt --weights model.caffemodel -o model.py "
               "--state-dict model.pt --fold-bn --class-name ResNet50\n"
               "  prototxt to-pytorch train_val.prototxt --input-shape data=1,3,224,224 "
               "-o model.py --no-verify",
    )
    torch_cmd.add_argument("net", metavar="NET")
    torch_cmd.add_argument("--weights", metavar="W.caffemodel")
    torch_cmd.add_argument("-o", "--output", required=True, metavar="MODEL.py")
    torch_cmd.add_argument("--state-dict", metavar="MODEL.pt",
                           help="where the weights go (default: -o with .pt)")
    torch_cmd.add_argument("--class-name", default="Net", metavar="NAME")
    torch_cmd.add_argument("--outputs", metavar="BLOB[,BLOB...]",
                           help="the blobs forward returns (default: the net's outputs, the "
                                "blobs no layer reads), e.g. fc1000,prob")
    torch_cmd.add_argument("--fold-bn", action="store_true",
                           help="fold BatchNorm into the layers before it first")
    verify_flags = torch_cmd.add_mutually_exclusive_group()
    verify_flags.add_argument("--verify", dest="verify", action="store_true", default=None,
                              help="compare with the executor (default when torch is there)")
    verify_flags.add_argument("--no-verify", dest="verify", action="store_false")
    torch_cmd.add_argument("--tolerance", type=float, default=1e-4,
                           help="largest relative error accepted by --verify (default 1e-4)")
    torch_cmd.add_argument("--seed", type=int, default=0,
                           help="for the verification's input (and weights without --weights)")
    torch_cmd.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W")
    torch_cmd.add_argument("--phase", choices=["TEST", "TRAIN"], default="TEST",
                           help="the net state to export (default TEST)")
    torch_cmd.add_argument("--stage", action="append", metavar="NAME")
    torch_cmd.add_argument("--plugin", action="append", metavar="FILE.py",
                           help="a Python file registering fork layers (with torch code)")
    torch_cmd.set_defaults(handler=cmd_to_pytorch)

    stats = commands.add_parser(
        "bn-stats", formatter_class=_Formatter,
        help="recompute BatchNorm statistics over data into new weights",
        description="Run the TRAIN-phase net forward over data with every weight frozen and "
                    "write new BatchNorm statistics into a copy of the weights (all other "
                    "blobs unchanged). --mode exact (default): the average of the batch means "
                    "and bias-corrected batch variances over all batches, scale factor 1. "
                    "--mode moving: Caffe's moving averages from a fresh start, with the "
                    "layer's moving_average_fraction or --decay. The data: the source the "
                    "net's TRAIN Data (LMDB) or ImageData layer names, or --data: an LMDB, a "
                    ".npy/.npz array (N,C,H,W) or an image list file; the layer's "
                    "transform_param applies (scale, mean, random crop and mirror from "
                    "--seed) as in Caffe. Memory: one batch's activations.\n\n"
                    "exit status: 0 written, 2 unreadable input or data",
        epilog="examples:\n"
               "  prototxt bn-stats train_val.prototxt --weights trained.caffemodel "
               "-o fixed.caffemodel\n"
               "  prototxt bn-stats train_val.prototxt --weights w.caffemodel --data "
               "images.npy --iterations 200 -o w2.caffemodel\n"
               "  prototxt bn-stats train_val.prototxt --weights w.caffemodel --mode moving "
               "--decay 0.99 -o w2.caffemodel",
    )
    stats.add_argument("file", metavar="TRAIN_VAL")
    stats.add_argument("--weights", required=True, metavar="W.caffemodel")
    stats.add_argument("--data", metavar="SOURCE",
                       help="LMDB, .npy/.npz or image list (default: the data layer's source)")
    stats.add_argument("-o", "--output", required=True, metavar="W2.caffemodel")
    stats.add_argument("--iterations", type=int, metavar="N",
                       help="batches to run (default: one pass over the data)")
    stats.add_argument("--mode", choices=["exact", "moving"], default="exact")
    stats.add_argument("--decay", type=float, metavar="D",
                       help="moving-average fraction for --mode moving (default: the layer's)")
    stats.add_argument("--batch-size", type=int, metavar="N",
                       help="override the data layer's batch size")
    stats.add_argument("--seed", type=int, default=0,
                       help="for random crops, mirroring, shuffling and Dropout")
    stats.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W")
    stats.add_argument("--stage", action="append", metavar="NAME",
                       help="a stage of the TRAIN net state (repeatable)")
    stats.add_argument("--level", type=int, help="the TRAIN net state's level")
    stats.add_argument("-v", "--verbose", action="store_true",
                       help="print each layer's change against the old statistics")
    stats.set_defaults(handler=cmd_bn_stats)

    summary = commands.add_parser(
        "summary", formatter_class=_Formatter,
        help="per-layer table: top shapes, parameters, MACs, activation memory",
        description="One row per layer of the net in the given phase: its top shapes (from "
                    "the net's inputs or --input-shape), its parameter count, its "
                    "multiply-adds (MACs) for one forward pass and the memory of the tops it "
                    "creates; totals at the end. Counting conventions: parameters are the "
                    "values of learned blobs (weights, biases, Scale gamma/beta, PReLU "
                    "slopes); BatchNorm's mean, variance and scale factor are statistics, "
                    "counted apart; a blob shared by name counts once. A MAC is one "
                    "multiply-add: Convolution counts (channels/group x kernel) per output "
                    "value, Deconvolution per input value, InnerProduct K per output, LSTM/RNN "
                    "each weight matrix per time step; BatchNorm, Scale and PReLU one per "
                    "value, LRN its window (+1) per value, MVN 2 per value with "
                    "normalize_variance, Eltwise PROD one per value per extra bottom (SUM "
                    "with coefficients one per bottom); pooling, ReLU and other comparisons, "
                    "plain additions (Eltwise SUM, Bias), softmax, copies and lookups count 0. "
                    "Memory is float32 bytes; a layer computing in place creates none and is "
                    "shown indented, with its host (the layer whose blob it rewrites).\n\n"
                    "exit status: 0 printed, 2 unreadable input",
        epilog="examples:\n"
               "  prototxt summary deploy.prototxt\n"
               "  prototxt summary train_val.prototxt --phase TRAIN --input-shape "
               "data=32,3,224,224\n"
               "  prototxt summary deploy.prototxt --format csv > layers.csv",
    )
    summary.add_argument("net", metavar="NET")
    summary.add_argument("--phase", choices=["TEST", "TRAIN"], default="TEST")
    summary.add_argument("--stage", action="append", metavar="NAME")
    summary.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W")
    summary.add_argument("--format", choices=["text", "json", "csv", "markdown"],
                         default="text")
    summary.add_argument("--plugin", action="append", metavar="FILE.py",
                         help="a Python file registering fork layers")
    summary.set_defaults(handler=cmd_summary)

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

    from .draw.command import add_parser as add_draw_parser

    add_draw_parser(commands, _Formatter)
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
