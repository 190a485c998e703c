"""The linter: rules with codes, an engine with suppressions and fixes, reporters.

    from prototxt_tools.lint import lint_text
    result = lint_text(open("train_val.prototxt").read(), "train_val.prototxt")
    for finding in result.findings:
        print(finding.format())
"""

from .config import LintConfig, load_config
from .engine import FixResult, LintOptions, LintResult, fix_text, lint_text
from .rule import Finding, Fix, Rule, all_rules, get_rule, register_rule

__all__ = ["Finding", "Fix", "FixResult", "LintConfig", "LintOptions", "LintResult", "Rule",
           "all_rules", "fix_text", "get_rule", "lint_text", "load_config", "register_rule"]
