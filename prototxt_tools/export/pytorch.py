"""Caffe net -> a standalone PyTorch module (source text) plus its state_dict.

The emitted module imports only torch. It defines one ``nn.Module`` whose submodules are the
layers with weights, named after the Caffe layers, and whose ``forward`` is straight-line code
over named locals in the net's order, computing what Caffe computes at TEST. Each layer's code
comes from its spec (``LayerSpec.torch``); this module only plans: which layers run, the
BatchNorm + Scale pairs to merge, names, when a computation may overwrite its input, helper
definitions, the state_dict. :func:`verify` runs the emitted module against the executor.
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from .._version import __version__
from ..errors import PrototxtError
from ..layers.base import TEST, TorchCode, TorchContext, TorchUnsupported, \
    torch_helper_names, torch_helpers
from ..net.model import Layer, Net, NetView
from ..syntax.tree import Document

#: Names the emitted code uses itself; blobs and layers never take them.
RESERVED = {"self", "torch", "nn", "F", "super", "forward", "outputs"}


@dataclass
class PyTorchExport:
    source: str  # the module's Python source
    class_name: str
    state: Optional[dict]  # {state_dict key: float32 ndarray}, None without weights
    inputs: list  # forward's arguments: blob names, in order
    input_shapes: dict  # blob name -> shape as the net states it (None dims unknown)
    outputs: list  # blob names forward returns (one: a tensor; several: a dict by name)
    names: dict  # submodule attribute -> Caffe layer name
    variables: dict  # blob name -> local variable name in forward
    notes: list = field(default_factory=list)


def to_pytorch(net: Union[str, bytes, Path, Document, Net], weights: Any = None, *,
               class_name: str = "Net", phase: int = TEST, input_shapes: Optional[dict] = None,
               stages: Sequence[str] = (), level: Optional[int] = None,
               fold_bn: bool = False, path: Optional[str] = None,
               outputs: Optional[Sequence[str]] = None) -> PyTorchExport:
    """The PyTorch module for ``net`` (text, Document, Net or path) and, with ``weights`` (a
    .caffemodel path, {layer: [arrays]}, triples or a NetParameter), its state_dict.

    ``outputs``: the blobs ``forward`` returns (their final values), instead of the net's
    outputs (blobs no layer reads); a logits blob next to ``prob``, say.

    ``fold_bn`` first folds BatchNorm into the layers before it (needs the weights). Raises
    PrototxtError naming every layer PyTorch cannot express."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise PrototxtError(f"--class-name {class_name!r} is not a Python class name")
    notes: list = []
    loaded = _load(net, path, input_shapes)
    if fold_bn:
        loaded, weights = _folded(loaded, weights, input_shapes, phase, stages, level, notes)
    view = loaded.view(phase, level, tuple(stages))
    if view.unknown_bottoms:
        layer, index = view.unknown_bottoms[0]
        raise PrototxtError.at(layer.node, f"layer '{layer.name}' reads "
                                           f"'{layer.bottoms[index]}', which no earlier layer "
                                           f"produces")
    blobs = _matched_weights(view, weights) if weights is not None else None
    return _Writer(loaded, view, blobs, class_name, notes, outputs).write()


# -- loading ------------------------------------------------------------------------------------

def _load(net: Any, path: Optional[str], input_shapes: Optional[dict]) -> Net:
    from ..run.executor import load_net

    if isinstance(net, bytes) or (isinstance(net, str) and "\n" in net):
        from ..syntax.parser import parse

        return Net.from_document(parse(net, path), input_shapes=input_shapes)
    return load_net(net, input_shapes)


def _folded(net: Net, weights: Any, input_shapes: Optional[dict], phase: int,
            stages: Sequence[str], level: Optional[int], notes: list) -> tuple:
    if weights is None:
        raise PrototxtError("--fold-bn needs the weights (the BatchNorm statistics)")
    if net.document is None:
        raise PrototxtError("--fold-bn needs the net's text")
    from ..net.upgrade import upgrade_text
    from ..rewrite.fold_bn import fold_bn
    from ..syntax.parser import parse

    document = net.document
    if net.upgrade_steps and any(step in ("V0 -> V1", "V1 -> V2") for step in net.upgrade_steps):
        document = parse(upgrade_text(document).text, document.path)
    result = fold_bn(document, weights, phase=phase, input_shapes=input_shapes, stages=stages,
                     level=level)
    notes.append(f"folded {len(result.folded)} BatchNorm layers first (max relative "
                 f"difference {result.max_rel:.2g})")
    folded = Net.from_document(parse(result.text, document.path), input_shapes=input_shapes)
    return folded, {name: arrays for name, _, arrays in result.weights}


def _matched_weights(view: NetView, weights: Any) -> dict:
    from ..run.executor import _weights_by_name, match_weights

    return match_weights(view, _weights_by_name(weights), np.float32, writable=False)


# -- names --------------------------------------------------------------------------------------

def identifier(name: str) -> str:
    """A Python identifier close to a Caffe name: other characters become '_'."""
    text = re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "x"
    text = re.sub(r"_+", "_", text)
    if text[0].isdigit():
        text = "l" + text if text[0] != "_" else "l" + text
    if keyword.iskeyword(text) or text in RESERVED:
        text += "_"
    return text


def _module_attributes() -> set:
    """Names an attribute of an nn.Module must not take (``self.training = nn.Conv2d(...)``
    would break the module)."""
    try:
        from torch import nn
    except ImportError:  # the source can be written without torch; these are the common ones
        return {"training", "forward", "eval", "train", "to", "cuda", "cpu", "float", "half",
                "double", "type", "apply", "parameters", "buffers", "children", "modules",
                "state_dict", "load_state_dict", "zero_grad", "register_buffer",
                "register_parameter", "add_module", "get_submodule", "named_modules",
                "named_parameters", "named_buffers", "named_children", "requires_grad_",
                "extra_repr", "share_memory", "compile", "dump_patches", "call_super_init"}
    return {name for name in dir(nn.Module) if not name.startswith("__")} | {"training"}


class _Names:
    """Unique identifiers for one namespace, remembering what each stands for."""

    def __init__(self, taken: Sequence[str] = ()):
        self.taken = set(taken)
        self.by_key: dict = {}

    def get(self, key: str) -> str:
        found = self.by_key.get(key)
        if found is not None:
            return found
        base = identifier(key)
        candidate, number = base, 1
        while candidate in self.taken:
            number += 1
            candidate = f"{base}_{number}"
        self.taken.add(candidate)
        self.by_key[key] = candidate
        return candidate


# -- planning and writing ---------------------------------------------------------------------

@dataclass
class _Step:
    layer: Layer
    code: TorchCode
    attr: Optional[str]  # submodule attribute, when the code has a module
    bottoms: list  # local variable names
    tops: list  # local variable names
    fused: Optional[Layer] = None
    bottom_refs: list = field(default_factory=list)  # BlobRefs (the versions read)
    top_refs: list = field(default_factory=list)  # BlobRefs written


class _Writer:
    def __init__(self, net: Net, view: NetView, blobs: Optional[dict], class_name: str,
                 notes: list, outputs: Optional[Sequence[str]] = None):
        self.net = net
        self.view = view
        self.blobs = blobs
        self.class_name = class_name
        self.notes = notes
        self.attrs = _Names(_module_attributes())
        self.variables = _Names(set(dir(builtins)) | set(torch_helper_names()) | {class_name})
        self.shapes = view.shapes
        self.output_refs = self._output_refs(outputs)

    def write(self) -> PyTorchExport:
        view = self.view
        inputs: list = []
        input_shapes: dict = {}
        steps: list = []
        unsupported: list = []
        fused_into: dict = {}  # fused layer index -> the layer absorbing it
        for layer in view.layers:
            spec = layer.spec
            if layer.index in fused_into:
                continue
            if spec is not None and spec.is_data and layer.type != "Python":
                for ref in view.outputs.get(layer.index, []):
                    if ref.name:
                        inputs.append(ref.name)
                        input_shapes[ref.name] = self.shapes.shapes.get(ref)
                        self.variables.get(ref.name)
                continue
            if spec is None or layer.type == "Python":
                why = ("a Python layer (its code is never imported)" if layer.type == "Python"
                       else "not a BVLC Caffe layer type (register a plugin with a torch "
                            "emission)")
                unsupported.append((layer, why))
                continue
            fused = self._fusable(layer)
            try:
                code = spec.torch(layer.param, self._context(layer, fused))
            except TorchUnsupported as exc:
                unsupported.append((layer, str(exc)))
                continue
            if fused is not None:
                fused_into[fused.index] = layer
            steps.append(self._step(layer, code, fused))
        if unsupported:
            raise self._unsupported_error(unsupported)
        input_refs = _input_refs(view)
        outputs = [ref.name for ref in self.output_refs if ref.name and ref not in input_refs]
        source = self._source(steps, inputs, input_shapes, outputs)
        state = self._state(steps) if self.blobs is not None else None
        names = {step.attr: step.layer.name for step in steps if step.attr}
        return PyTorchExport(source, self.class_name, state, inputs, input_shapes, outputs,
                             names, dict(self.variables.by_key), self.notes)

    def _output_refs(self, names: Optional[Sequence[str]]) -> list:
        view = self.view
        if names is None:
            return list(view.net_outputs)
        final: dict = {}
        for layer in view.layers:
            for ref in view.outputs.get(layer.index, []):
                if ref.name:
                    final[ref.name] = ref
        unknown = [name for name in names if name not in final]
        if unknown:
            known = ", ".join(list(final)[:8]) + (", ..." if len(final) > 8 else "")
            raise PrototxtError(f"no blob named {', '.join(repr(n) for n in unknown)} in the "
                                f"{view.state.describe()} net (blobs: {known})")
        return [final[name] for name in dict.fromkeys(names)]

    # -- per layer ---------------------------------------------------------------------------
    def _context(self, layer: Layer, fused: Optional[Layer]) -> TorchContext:
        view, shapes = self.view, self.shapes
        blob_shapes = self._blob_shapes(layer)
        return TorchContext(
            bottom_shapes=shapes.bottom_shapes(view, layer),
            top_shapes=shapes.top_shapes(view, layer) if hasattr(shapes, "top_shapes") else
            [shapes.shapes.get(ref) for ref in view.outputs.get(layer.index, [])],
            blob_shapes=blob_shapes,
            fused=None if fused is None else fused.param,
            fused_blob_shapes=[] if fused is None else self._blob_shapes(fused))

    def _blob_shapes(self, layer: Layer) -> list:
        if self.blobs is not None and layer.name in self.blobs:
            return [tuple(np.shape(array)) for array in self.blobs[layer.name]]
        spec = layer.spec
        found = spec.blob_shapes(layer.param, self.shapes.bottom_shapes(self.view, layer))
        return list(found) if found is not None else []

    def _fusable(self, layer: Layer) -> Optional[Layer]:
        """The Scale right after a BatchNorm, when the BatchNorm's output feeds only it and it
        scales channels (axis 1, one axis, learned gamma): merged into one BatchNorm module."""
        if layer.type != "BatchNorm":
            return None
        readers = self.view.readers(layer, 0)
        if len(readers) != 1:
            return None
        scale, slot = readers[0]
        if scale.type != "Scale" or slot != 0 or len(scale.bottoms) != 1:
            return None
        p = scale.param.scale_param
        shape = self.shapes.shapes.get(self.view.outputs[layer.index][0])
        rank = len(shape) if shape is not None else None
        axis = p.axis if p.axis >= 0 or rank is None else p.axis + rank
        if axis != 1 or p.num_axes != 1:
            return None
        return scale

    def _step(self, layer: Layer, code: TorchCode, fused: Optional[Layer]) -> _Step:
        view = self.view
        bottoms = [self.variables.get(ref.name) for ref in view.inputs.get(layer.index, [])
                   if ref is not None]
        last = fused if fused is not None else layer
        tops = [self.variables.get(ref.name or f"{last.name}_top{i}")
                for i, ref in enumerate(view.outputs.get(last.index, []))]
        attr = self.attrs.get(layer.name) if code.module else None
        return _Step(layer, code, attr, bottoms, tops, fused,
                     [ref for ref in view.inputs.get(layer.index, []) if ref is not None],
                     list(view.outputs.get(last.index, [])))

    def _unsupported_error(self, unsupported: list) -> PrototxtError:
        def where(layer: Layer) -> str:
            if layer.node is None:
                return ""
            start = layer.node.span.start
            return f" at {start.line}:{start.column}"

        first, why = unsupported[0]
        text = f"cannot export to PyTorch: layer '{first.name}' ({first.type}): {why}"
        rest = unsupported[1:]
        if rest:
            listed = "; ".join(f"'{layer.name}' ({layer.type}{where(layer)}): {reason}"
                               for layer, reason in rest)
            text += f"; and {len(rest)} more: {listed}"
        return PrototxtError.at(first.node, text)

    # -- in place ------------------------------------------------------------------------------
    def _inplace_ok(self, step: _Step, fresh: set, inputs: set, last_read: dict,
                    position: int) -> bool:
        """The step may overwrite its first bottom: nothing reads that value later, it is no
        forward input, no other variable shares its memory, and the layer that made it
        keeps nothing autograd needs."""
        if step.code.inplace is None or len(step.tops) != 1 or not step.bottom_refs:
            return False
        ref = step.bottom_refs[0]
        if ref in inputs or ref not in fresh or step.bottom_refs.count(ref) > 1:
            return False
        return last_read.get(ref, -1) <= position

    # -- the source ----------------------------------------------------------------------------
    def _source(self, steps: list, inputs: list, input_shapes: dict, outputs: list) -> str:
        helpers: list = []
        for step in steps:
            helpers.extend(step.code.helpers)
        lines = []
        for source in torch_helpers(dict.fromkeys(helpers)):
            lines += ["", source.rstrip("\n"), ""]
        lines += ["", f"class {self.class_name}(nn.Module):"]
        lines += self._class_doc(steps)
        lines += ["", "    def __init__(self):", "        super().__init__()"]
        for step in steps:
            if step.attr:
                lines += wrap_line(f"        self.{step.attr} = {step.code.module}")
        args = ", ".join(self.variables.get(name) for name in inputs)
        lines += ["", f"    def forward(self, {args}):" if args else "    def forward(self):"]
        lines += self._forward_body(steps, inputs, outputs)
        code = "\n".join(lines)
        imports = [line for line, used in (
            ("import torch", re.search(r"(?<![.\w])torch\.", code)),
            ("import torch.nn.functional as F", re.search(r"(?<![.\w])F\.", code)),
            ("from torch import nn", True)) if used]
        lines = self._header(inputs, input_shapes, outputs) + [""] + imports + [""] + lines
        return "\n".join(lines).rstrip("\n") + "\n"

    def _header(self, inputs: list, input_shapes: dict, outputs: list) -> list:
        source = self.net.document.path if self.net.document is not None else None
        name = self.net.upgraded.name or "net"
        shape = ", ".join(f"{n} {_fmt(input_shapes.get(n))}" for n in inputs) or "none"
        title = '"""' + f"PyTorch version of the Caffe net '{name}'"
        if source:
            title += f" ({Path(source).name})"
            if len(title) >= WIDTH:  # the file name alone on a line (a lone word may be long)
                title = title[:title.rindex(" (")] + f"\n({Path(source).name})"
        lines = [title + ".", "",
                 f"Written by prototxt-tools {__version__}; computes what Caffe computes at "
                 f"TEST.", f"Inputs: {shape}.",
                 f"Returns: {', '.join(outputs) if len(outputs) != 1 else outputs[0]}"
                 + (" (a dict by blob name)." if len(outputs) > 1 else "."), '"""']
        return lines

    def _class_doc(self, steps: list) -> list:
        renamed = [(step.attr, step.layer.name) for step in steps
                   if step.attr and step.attr != step.layer.name]
        fused = [(step.attr, step.fused.name) for step in steps
                 if step.fused is not None and step.attr]
        lines = ['    """Submodules are named after the Caffe layers.']
        if renamed:
            lines.append("")
            lines.append("    Renamed (attribute <- Caffe layer):")
            lines += [f"        {attr} <- {name!r}" for attr, name in renamed]
        if fused:
            lines.append("")
            lines.append("    Scale layers merged into the BatchNorm before them:")
            lines += [f"        {attr} <- {name!r}" for attr, name in fused]
        lines.append('    """')
        return lines

    def _forward_body(self, steps: list, inputs: list, outputs: list) -> list:
        view = self.view
        last_read: dict = {}  # BlobRef -> position of its last reader
        for position, step in enumerate(steps):
            for ref in step.bottom_refs:
                last_read[ref] = position
        for ref in self.output_refs:
            last_read[ref] = len(steps)
        fresh: set = set()  # BlobRefs held by tensors nothing else shares
        input_refs = _input_refs(view)
        body = []
        for position, step in enumerate(steps):
            code = step.code
            values = {f"b{i}": name for i, name in enumerate(step.bottoms)}
            values["m"] = f"self.{step.attr}" if step.attr else "None"
            if self._inplace_ok(step, fresh, input_refs, last_read, position):
                expressions = [code.inplace]
            else:
                expressions = code.expressions
            rendered = [_render(text, values) for text in expressions]
            if code.tuple_tops:
                body += wrap_line(f"        {', '.join(step.tops)} = {rendered[0]}")
            else:
                for top, text in zip(step.tops, rendered):
                    if top != text:
                        body += wrap_line(f"        {top} = {text}")
            if code.fresh:
                fresh.update(step.top_refs)
            else:  # the tops may share memory with the bottoms: neither may be overwritten
                fresh.difference_update(step.top_refs)
                fresh.difference_update(step.bottom_refs)
        if len(outputs) == 1:
            body.append(f"        return {self.variables.get(outputs[0])}")
        else:
            items = ", ".join(f"{name!r}: {self.variables.get(name)}" for name in outputs)
            body += wrap_line(f"        return {{{items}}}")
        return body

    # -- weights -------------------------------------------------------------------------------
    def _state(self, steps: list) -> dict:
        state: dict = {}
        for step in steps:
            if not step.attr:
                continue
            blobs = self.blobs.get(step.layer.name, []) if self.blobs else []
            fused = (self.blobs.get(step.fused.name, []) if self.blobs and step.fused else [])
            for key, convert in step.code.state.items():
                array = np.ascontiguousarray(convert(list(blobs), list(fused)), np.float32)
                state[f"{step.attr}.{key}"] = array
        return state


WIDTH = 100  # the emitted code's line length


def wrap_line(line: str, width: int = WIDTH) -> list:
    """A statement longer than ``width`` broken after the first bracket that lets it fit:
    the bracket's items on the following lines (hanging indent of 4), filled greedily; an
    item still too long is broken the same way. Brackets inside string literals are not
    brackets. A line that cannot be broken is returned as it is."""
    if len(line) <= width:
        return [line]
    indent = len(line) - len(line.lstrip(" "))
    for start, end in _brackets(line):
        head, inner, tail = line[:start + 1], line[start + 1:end], line[end:]
        items = _split_items(inner)
        if len(head) > width or not items:
            continue
        pad = " " * (indent + 4)
        rows: list = []
        current = pad + items[0]
        for item in items[1:]:
            if len(current) + 2 + len(item) + 1 <= width:
                current += ", " + item
            else:
                rows.append(current + ",")
                current = pad + item
        rows.append(current + tail)
        result = [head]
        for row in rows:
            result += wrap_line(row, width) if len(row) > width else [row]
        return result
    return [line]


def _code_chars(text: str) -> Iterator:
    """(index, character) of ``text`` outside string literals (quotes and escapes skipped)."""
    quote, i = None, 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        else:
            yield i, char
        i += 1


def _brackets(line: str) -> list:
    """(open, close) index pairs of the line's brackets, by opening position."""
    pairs, stack = [], []
    for i, char in _code_chars(line):
        if char in "([{":
            stack.append(i)
        elif char in ")]}" and stack:
            pairs.append((stack.pop(), i))
    return sorted(pairs)


def _split_items(text: str) -> list:
    """``text`` split at its top-level commas (outside brackets and strings), stripped."""
    items, depth, start = [], 0, 0
    for i, char in _code_chars(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    if last:
        items.append(last)
    return items


def _render(template: str, values: dict) -> str:
    return re.sub(r"\{(b\d+|m)\}", lambda match: values[match.group(1)], template)


def _fmt(shape: Any) -> str:
    if shape is None:
        return "(?)"
    return "x".join("?" if d is None else str(d) for d in shape)


# -- checking the result ----------------------------------------------------------------------

def load_module(export: PyTorchExport) -> Any:
    """An instance of the emitted class (state loaded when there is one), in eval mode.
    The source is ours, written above: it imports only torch."""
    import types

    import torch

    module = types.ModuleType(f"prototxt_export_{export.class_name}")
    exec(compile(export.source, f"<{export.class_name}.py>", "exec"), module.__dict__)
    model = getattr(module, export.class_name)()
    if export.state is not None:
        model.load_state_dict({key: torch.from_numpy(np.array(value, np.float32))
                               for key, value in export.state.items()}, strict=True)
    return model.eval()


def verify(export: PyTorchExport, net: Any, weights: Any = None, *, seed: int = 0,
           inputs: Optional[dict] = None, input_shapes: Optional[dict] = None,
           phase: int = TEST) -> dict:
    """Run the executor and the emitted module on the same inputs (random from ``seed``
    unless given) and weights; {output blob: (max abs error, max error relative to the
    largest magnitude of the executor's output)}."""
    import torch

    from ..run.executor import Executor

    executor = Executor(net, weights, phase=phase, seed=seed, input_shapes=input_shapes)
    if inputs is None:
        rng = np.random.default_rng(seed)
        inputs = {}
        labels = _label_classes(executor.view)
        for name, shape in executor.input_shapes().items():
            if shape is None or any(d is None for d in shape):
                raise PrototxtError(f"input '{name}' has an unknown shape {_fmt(shape)}; give "
                                    f"it with --input-shape {name}=N,C,H,W")
            if name in labels:
                inputs[name] = rng.integers(0, labels[name], shape).astype(np.float32)
            else:
                inputs[name] = rng.standard_normal(shape).astype(np.float32)
    expected = executor.forward(inputs, outputs=export.outputs)
    if export.state is None and any(True for _ in load_module(export).parameters()):
        raise PrototxtError("verify needs the export made with the same weights")
    model = load_module(export)
    with torch.no_grad():
        result = model(*[torch.from_numpy(np.array(inputs[name], np.float32))
                         for name in export.inputs])
    if not isinstance(result, dict):
        result = {export.outputs[0]: result}
    errors = {}
    for name in export.outputs:
        ours = np.asarray(result[name].detach().numpy(), np.float64)
        theirs = np.asarray(expected[name], np.float64)
        if ours.shape != theirs.shape:
            raise PrototxtError(f"output '{name}': PyTorch gives shape {ours.shape}, the "
                                f"executor {theirs.shape}")
        if not theirs.size:
            errors[name] = (0.0, 0.0)
            continue
        absolute = float(np.max(np.abs(ours - theirs)))
        scale = float(np.max(np.abs(theirs))) or 1.0
        errors[name] = (absolute, absolute / scale)
    return errors


def _label_classes(view: Any) -> dict:
    """{input: class count} for the inputs a loss or Accuracy layer reads as labels (its
    second bottom): random labels must be class indices. The count is the first bottom's
    axis 1 (2 when unknown)."""
    inputs = _input_refs(view)
    found: dict = {}
    for layer in view.layers:
        if layer.spec is None or layer.spec.family != "loss":
            continue
        refs = view.inputs.get(layer.index, [])
        if len(refs) < 2 or refs[1] not in inputs or refs[1] is None:
            continue
        shape = view.shapes.shapes.get(refs[0]) if refs[0] is not None else None
        classes = shape[1] if shape is not None and len(shape) > 1 and shape[1] else 2
        found[refs[1].name] = min(found.get(refs[1].name, classes), classes)
    return found


def _input_refs(view: NetView) -> set:
    """The blobs data layers produce: the module's forward arguments."""
    return {ref for layer in view.layers if layer.spec is not None and layer.spec.is_data
            for ref in view.outputs.get(layer.index, [])}
