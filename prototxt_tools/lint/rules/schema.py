"""Schema rules (S): what binding the file to Caffe's schema finds, as rules with codes.

These apply to nets and solvers alike. S001 (syntax errors) is reported by the engine itself:
when a file does not parse nothing else can be checked, and it cannot be turned off.
"""

from __future__ import annotations

import re
from typing import Iterator, Optional

from ...errors import ERROR, WARNING
from ...syntax.edits import TextEdit
from ..context import LintContext
from ..rule import Finding, Fix, Rule, register_rule

_SUGGESTION = re.compile(r"did you mean '([^']+)'\?")


class SchemaRule(Rule):
    """Reports the binding diagnostics that carry this rule's code."""

    needs_net = False
    #: Report each distinct message once per file (with a count), not at every occurrence:
    #: a fork's file repeats the same block hundreds of times.
    once_per_message = False

    def check(self, context: LintContext) -> Iterator[Finding]:
        matching = [d for d in context.diagnostics if d.code == self.code]
        if self.once_per_message:
            groups: dict = {}
            for diagnostic in matching:
                # Errors stay one per place (each gets its own fix); warnings group.
                key = diagnostic.message if diagnostic.severity != ERROR else id(diagnostic)
                groups.setdefault(key, []).append(diagnostic)
            for diagnostic, *rest in groups.values():
                finding = context.finding_at(self, diagnostic)
                if rest:
                    finding.message += f" ({len(rest) + 1} times in this file)"
                finding.fix = self.fix_for(context, diagnostic)
                yield finding
            return
        for diagnostic in matching:
            finding = context.finding_at(self, diagnostic)
            finding.fix = self.fix_for(context, diagnostic)
            yield finding

    def fix_for(self, context: LintContext, diagnostic) -> Optional[Fix]:
        return None


@register_rule
class SyntaxError_(SchemaRule):
    code = "S001"
    name = "syntax-error"
    severity = ERROR
    summary = "the file is not valid protobuf text"
    why = ("Caffe (and everything else) stops at the first syntax error. When a file does not "
           "parse, no other rule can run; this finding cannot be turned off.")
    example = 'layer { name: "conv1" type: "Convolution"'
    use_instead = 'layer { name: "conv1" type: "Convolution" }'


@register_rule
class UnknownField(SchemaRule):
    code = "S002"
    name = "unknown-field"
    severity = ERROR
    summary = "a field Caffe's schema does not have"
    why = ("Caffe's text parser rejects any field its schema does not define, so the net does "
           "not load at all; most are typos (batchsize for batch_size) or fields of a fork.")
    example = 'layer { name: "data" type: "Data" top: "data" data_param { batchsize: 4 } }'
    use_instead = 'layer { name: "data" type: "Data" top: "data" data_param { batch_size: 4 } }'
    fix_description = "Renames the field to the suggested name (when there is one)."
    fix_safety = "Unsafe: the suggestion is a guess from spelling."

    def fix_for(self, context: LintContext, diagnostic) -> Optional[Fix]:
        match = _SUGGESTION.search(diagnostic.message)
        field = context.field_at(diagnostic.offset or 0) if match else None
        if field is None:
            return None
        start = field.start_offset
        edit = TextEdit(start, start + len(field.name), match.group(1))
        return Fix((edit,), False, f"rename to '{match.group(1)}'")


@register_rule
class WrongValueType(SchemaRule):
    code = "S003"
    name = "wrong-value-type"
    severity = ERROR
    summary = "a value of the wrong kind for its field (text for a number, a block for a value...)"
    why = ("Each field takes one kind of value: integers, numbers, true/false, enum names, "
           "quoted strings or a { } block. Caffe's parser refuses anything else.")
    example = 'layer { name: conv1 convolution_param { num_output: 2.5 } }'
    use_instead = 'layer { name: "conv1" convolution_param { num_output: 2 } }'
    fix_description = "Quotes a bare word given to a string field (name: conv1 -> name: \"conv1\")."
    fix_safety = "Safe: a bare word in a string field can only mean that string."

    def fix_for(self, context: LintContext, diagnostic) -> Optional[Fix]:
        if "takes a quoted string; write" not in diagnostic.message:
            return None
        offset = diagnostic.offset or 0
        source = context.document.source
        word = re.match(r"[A-Za-z_][A-Za-z0-9_]*", source[offset:])
        if word is None:
            return None
        text = word.group(0)
        return Fix((TextEdit(offset, offset + len(text), f'"{text}"'),), True, "quote the string")


@register_rule
class UnknownEnumValue(SchemaRule):
    code = "S004"
    name = "unknown-enum-value"
    severity = ERROR
    summary = "an enum value the field does not have"
    why = "Enum fields accept only their own value names (or numbers); anything else stops Caffe."
    example = 'layer { name: "pool" type: "Pooling" pooling_param { pool: MAXX } }'
    use_instead = 'layer { name: "pool" type: "Pooling" pooling_param { pool: MAX } }'
    fix_description = "Replaces the value with the suggested one (when there is one)."
    fix_safety = "Unsafe: the suggestion is a guess from spelling."

    def fix_for(self, context: LintContext, diagnostic) -> Optional[Fix]:
        match = _SUGGESTION.search(diagnostic.message)
        if match is None:
            return None
        offset = diagnostic.offset or 0
        word = re.match(r"[A-Za-z_][A-Za-z0-9_]*", context.document.source[offset:])
        if word is None:
            return None
        edit = TextEdit(offset, offset + len(word.group(0)), match.group(1))
        return Fix((edit,), False, f"use {match.group(1)}")


@register_rule
class IntegerOutOfRange(SchemaRule):
    code = "S005"
    name = "integer-out-of-range"
    severity = ERROR
    summary = "an integer outside its field's type (a negative uint32, a 2**32 int32...)"
    why = ("Caffe's parser refuses integers its field's type cannot hold, e.g. a negative "
           "num_output (uint32).")
    example = 'layer { name: "ip" type: "InnerProduct" inner_product_param { num_output: -1 } }'
    use_instead = 'layer { name: "ip" type: "InnerProduct" inner_product_param { num_output: 1 } }'


@register_rule
class FieldGivenTwice(SchemaRule):
    code = "S006"
    name = "field-given-twice"
    severity = ERROR
    summary = "a non-repeated field given twice"
    why = ("Caffe parses with protobuf's strict text parser, which rejects a second value for a "
           "field that holds one; lenient tools silently keep the last, so the two disagree.")
    example = 'layer { name: "a" name: "b" }'
    use_instead = 'layer { name: "a" }'


@register_rule
class InvalidString(SchemaRule):
    code = "S007"
    name = "invalid-string"
    severity = ERROR
    summary = "a string with an unknown escape or bytes that are not UTF-8"
    why = "Caffe's parser rejects unknown escape sequences and string fields that are not UTF-8."
    example = r'layer { name: "a\q" }'
    use_instead = r'layer { name: "a\\q" }'


@register_rule
class TemplatePlaceholder(SchemaRule):
    code = "S008"
    name = "template-placeholder"
    severity = ERROR
    summary = "an unsubstituted template placeholder such as ${num_output}"
    why = ("Some projects generate prototxt from templates; a placeholder left in is not a "
           "value, and Caffe stops at it.")
    example = 'layer { name: "ip" inner_product_param { num_output: ${num_output} } }'
    use_instead = 'layer { name: "ip" inner_product_param { num_output: 10 } }'


@register_rule
class ForkParameterBlock(SchemaRule):
    once_per_message = True
    code = "S009"
    name = "fork-parameter-block"
    severity = WARNING
    summary = "a parameter block a Caffe fork adds (bn_param, interp_param, prior_box_param...)"
    why = ("Forks such as SegNet, PSPNet, SSD or Faster R-CNN add their own *_param blocks. BVLC "
           "Caffe refuses the file; the fork that wrote it reads it. prototxt-tools ignores the "
           "block and checks the rest.")
    example = 'layer { name: "up" type: "Interp" interp_param { zoom_factor: 2 } }'
    use_instead = 'layer { name: "up" type: "Deconvolution" convolution_param { num_output: 8 kernel_size: 4 stride: 2 } }'


@register_rule
class ForkField(SchemaRule):
    once_per_message = True
    code = "S010"
    name = "fork-field"
    severity = WARNING
    summary = "a single field a Caffe fork adds to a BVLC message (ceil_mode, mem_group_size...)"
    why = ("Some forks add fields to BVLC's own parameters. Most are ignored with a warning; "
           "ceil_mode is an error because BVLC Caffe rounds pooled sizes the other way unless "
           "told round_mode: FLOOR, so ignoring it would change the net's shapes.")
    example = 'layer { name: "pool" type: "Pooling" pooling_param { kernel_size: 2 stride: 2 ceil_mode: false } }'
    use_instead = 'layer { name: "pool" type: "Pooling" pooling_param { kernel_size: 2 stride: 2 round_mode: FLOOR } }'
    fix_description = "Rewrites ceil_mode: false as round_mode: FLOOR and drops ceil_mode: true."
    fix_safety = "Safe: both spellings mean the same rounding."

    def fix_for(self, context: LintContext, diagnostic) -> Optional[Fix]:
        field = context.field_at(diagnostic.offset or 0)
        if field is None or field.name != "ceil_mode" or field.value.__class__.__name__ != "Scalar":
            return None
        value = field.value.text.lower()
        start, end = field.start_offset, field.end_offset
        if value in ("false", "f", "0"):
            return Fix((TextEdit(start, end, "round_mode: FLOOR"),), True,
                       "write round_mode: FLOOR")
        if value in ("true", "t", "1"):
            from ...syntax.edits import delete

            return Fix((delete(field, with_comments=False),), True,
                       "drop ceil_mode: true (CEIL is the default)")
        return None


@register_rule
class FloatOverflow(SchemaRule):
    code = "S011"
    name = "float-overflow"
    severity = WARNING
    summary = "a float value too large for float32"
    why = "Caffe stores these fields as float32; a larger value silently becomes infinity."
    example = 'layer { name: "c" convolution_param { weight_filler { std: 1e40 } } }'
    use_instead = 'layer { name: "c" convolution_param { weight_filler { std: 0.01 } } }'
