"""What rules see: the parsed file, its bound message, the Net model and its phase views."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from ..errors import Diagnostic
from ..layers.base import TEST, TRAIN
from ..net.model import Layer, Net, NetView
from ..syntax.tree import Document, Node
from .config import LintConfig

if TYPE_CHECKING:
    from .rule import Fix, Finding, Rule


class LintContext:
    """One file being linted.

    ``views`` are the nets Caffe would build: TRAIN and TEST by default (level 0, the file's
    own stages), or the single state given with ``--phase/--level/--stage``.
    """

    def __init__(self, document: Document, kind: str, diagnostics: Sequence[Diagnostic],
                 net: Optional[Net], config: LintConfig, phases: Sequence[int] = (TRAIN, TEST),
                 level: Optional[int] = None, stages: Iterable[str] = ()):
        self.document = document
        self.path = document.path
        self.kind = kind  # "net" or "solver"
        self.diagnostics = list(diagnostics)  # from binding (the S rules report them)
        self.net = net
        self.config = config
        self.views: list[NetView] = []
        if net is not None:
            self.views = designed_views(net, phases, level, tuple(stages))
        self._cache: dict = {}

    # -- views ---------------------------------------------------------------------------------
    def view(self, phase: int) -> Optional[NetView]:
        for view in self.views:
            if view.state.phase == phase:
                return view
        return None

    @property
    def train(self) -> Optional[NetView]:
        return self.view(TRAIN)

    @property
    def test(self) -> Optional[NetView]:
        return self.view(TEST)

    def views_with(self, layer: Layer) -> list[NetView]:
        """The linted views in which ``layer`` is active."""
        return [view for view in self.views if view.is_active(layer)]

    def active_layers(self) -> list[Layer]:
        """Layers active in at least one linted view, in file order."""
        if self.net is None:
            return []
        return [layer for layer in self.net.layers if self.views_with(layer)]

    def has_schema_errors(self, layer: Layer) -> bool:
        """Whether binding found errors inside this layer (its checks would only cascade)."""
        if layer.node is None:
            return False
        offsets = self.cached("error offsets", lambda: sorted(
            d.offset for d in self.diagnostics if d.severity == "error" and d.offset is not None))
        start = bisect_left(offsets, layer.node.start_offset)
        return start < len(offsets) and offsets[start] <= layer.node.end_offset

    def cached(self, key: str, compute: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def option(self, code: str, name: str, default: Any) -> Any:
        return self.config.options.get(code, {}).get(name, default)

    # -- findings ------------------------------------------------------------------------------
    def make_finding(self, rule: "Rule", where: Any, message: str, *, path: Sequence = (),
                     fix: Optional["Fix"] = None, severity: str) -> "Finding":
        from .rule import Finding

        layer_name = None
        scope = None
        node: Optional[Node] = None
        if isinstance(where, Layer):
            layer_name = where.name
            node = where.locate(path)
            if where.node is not None:
                scope = (where.node.start_offset, where.node.end_offset)
        elif isinstance(where, Node):
            node = where
        if node is not None:
            start, end = node.span
            return Finding(rule.code, rule.name, severity, message, self.path, start.line,
                           start.column, end.line, end.column, start.offset, end.offset, fix,
                           layer_name, scope)
        return Finding(rule.code, rule.name, severity, message, self.path, 1, 1, 1, 1, 0, 0, fix,
                       layer_name, scope)

    def field_at(self, offset: int) -> Optional[Any]:
        """The field whose text starts at ``offset`` (binding diagnostics point there)."""
        index = self.cached("fields by offset", lambda: {
            field.start_offset: field for field in self.document.walk()})
        return index.get(offset)

    def finding_at(self, rule: "Rule", diagnostic: Diagnostic) -> "Finding":
        """A finding at a diagnostic's position (binding problems)."""
        from .rule import Finding

        line = diagnostic.line or 1
        column = diagnostic.column or 1
        offset = diagnostic.offset or 0
        scope = self._layer_scope_at(offset)
        return Finding(rule.code, rule.name, diagnostic.severity, diagnostic.message, self.path,
                       line, column, diagnostic.end_line or line, diagnostic.end_column or column,
                       offset, offset, None, None, scope)

    def _layer_scope_at(self, offset: int) -> Optional[tuple]:
        for field in self.document.fields:
            if field.name in ("layer", "layers") and field.start_offset <= offset <= \
                    field.end_offset:
                return (field.start_offset, field.end_offset)
        return None


def designed_views(net: Net, phases: Sequence[int], level: Optional[int],
                   stages: tuple) -> list:
    """The nets to lint: each requested phase, and with no stage given, also each stage
    combination the net's include rules name (solvers instantiate nets that way, e.g.
    test_state { stage: "test-on-train" }). A state in which no layer produces data (no layer
    without bottoms) is one the net is not built for, so it is skipped unless none has data."""
    candidates = [net.view(phase, level, stages) for phase in phases]
    if not stages:
        for layer in net.layers:
            for rule in layer.param.include:
                if not rule.stage:
                    continue
                for phase in phases:
                    if not rule.HasField("phase") or rule.phase == phase:
                        view = net.view(phase, level, tuple(rule.stage))
                        if all(view is not other for other in candidates):
                            candidates.append(view)
    viable = [view for view in candidates if _has_source(view)]
    return viable or candidates[:len(phases)]


def _has_source(view: NetView) -> bool:
    return any(not layer.param.bottom and layer.param.top for layer in view.layers)
