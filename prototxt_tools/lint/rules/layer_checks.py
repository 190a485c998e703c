"""Layer rules (L): Caffe's own set-up checks, decided before anything runs.

Each layer type's checks live with its semantics in prototxt_tools/layers; every check
carries one of the codes below, and each code is a rule here. Checks that need shapes run on
the nets of the linted phases, after shape inference.
"""

from __future__ import annotations

from typing import Iterator

from ...errors import ERROR
from ...layers.base import CHECK_CODES
from ...net.shapes import count_problem
from ..context import LintContext
from ..rule import Finding, Rule, register_rule

# Documentation per code: (why, example, use instead).
_DOCS = {
    "L001": (
        "Every layer type takes a fixed number of bottoms and tops (Eltwise at least two "
        "bottoms, BatchNorm exactly one of each, Crop two bottoms...). Caffe checks the counts "
        "when it sets the layer up and aborts when they are wrong.",
        'layer { name: "sum" type: "Eltwise" bottom: "a" top: "sum" }',
        'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }'),
    "L002": (
        "propagate_down switches gradients per bottom; Caffe needs it either absent or given "
        "once per bottom.",
        'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" '
        'propagate_down: false }',
        'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" '
        'propagate_down: true propagate_down: false }'),
}
_GENERIC_WHY = ("Caffe checks these parameters when it sets the layer up and aborts the whole "
                "run with a CHECK failure; this rule finds the same problems before anything "
                "runs, with the reason in plain words.")


class LayerCheckRule(Rule):
    """Reports the layer-type checks (prototxt_tools/layers) that carry this rule's code."""

    severity = ERROR

    def check(self, context: LintContext) -> Iterator[Finding]:
        code = self.code
        skipped = set()
        for layer in context.active_layers():
            spec = layer.spec
            if spec is None or context.has_schema_errors(layer):
                skipped.add(layer.index)
                continue
            if code == "L001":
                problem = count_problem(layer)
                if problem is not None:
                    yield self.finding(context, layer, f"{layer.name}: {problem.message}",
                                       path=problem.field, severity=problem.severity)
                continue
            if code == "L002":
                param = layer.param
                if param.propagate_down and len(param.propagate_down) != len(param.bottom):
                    yield self.finding(
                        context, layer,
                        f"layer '{layer.name}' gives propagate_down {len(param.propagate_down)} "
                        f"times for {len(param.bottom)} bottoms; give it 0 or "
                        f"{len(param.bottom)} times", path=("propagate_down", 0))
                continue
            for problem in spec.check(layer.param):
                if problem.code == code:
                    yield self.finding(context, layer, f"{layer.type} '{layer.name}': "
                                       f"{problem.message}", path=problem.field,
                                       severity=problem.severity)
        if code in ("L001", "L002"):
            return
        for view in context.views:
            for layer, problem in view.shapes.problems:
                if problem.code == code and layer.index not in skipped:
                    yield self.finding(context, layer, f"{layer.type} '{layer.name}': "
                                       f"{problem.message}", path=problem.field,
                                       severity=problem.severity)


def _make_rule(code: str, name: str, summary: str) -> type:
    why, example, use_instead = _DOCS.get(code, (_GENERIC_WHY, "", ""))
    rule_class = type(f"LayerCheck{code}", (LayerCheckRule,), {
        "code": code, "name": name, "summary": summary, "why": why, "example": example,
        "use_instead": use_instead, "__doc__": summary,
    })
    return register_rule(rule_class)


for _code, (_name, _summary) in CHECK_CODES.items():
    globals()[f"LayerCheck{_code}"] = _make_rule(_code, _name, _summary)
