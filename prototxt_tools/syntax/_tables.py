# Generated from grammars/prototxt.lark by `python -m prototxt_tools.syntax.grammar`.
# Do not edit; regenerate after changing the grammar.

GRAMMAR_SHA256 = 'b2a1041b3c911365c4cfff5636346c39343f5fd6b2b8bba88fb6b0b0305cd7e9'

# Terminals in grammar order: name -> Python regex.
TERMINALS = {
    'COLON': ':',
    'LBRACE': '\\{',
    'RBRACE': '\\}',
    'LANGLE': '<',
    'RANGLE': '>',
    'LSQB': '\\[',
    'RSQB': '\\]',
    'COMMA': ',',
    'SEMICOLON': ';',
    'MINUS': '\\-',
    'IDENT': '[A-Za-z_][A-Za-z0-9_]*',
    'NUMBER': '(?:0[xX][0-9A-Fa-f]+|(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?)(?![A-Za-z0-9_.])',
    'STRING': '(?:"(?:[^"\\\\\n]|\\\\[^\n])*"|\'(?:[^\'\\\\\n]|\\\\[^\n])*\')',
    'TEMPLATE': '\\$\\{[^{}\n]*\\}',
}

# Whitespace and comments: kept as trivia before the next token.
IGNORED = {
    'WS': '[ \t\r\n\x0c\\v]+',
    'COMMENT': '#[^\n]*',
}

TOKEN_REGEX = '((?:[ \t\r\n\x0c\\v]+|#[^\n]*)*)((?::)|(?:\\{)|(?:\\})|(?:<)|(?:>)|(?:\\[)|(?:\\])|(?:,)|(?:;)|(?:\\-)|(?:[A-Za-z_][A-Za-z0-9_]*)|(?:(?:0[xX][0-9A-Fa-f]+|(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?)(?![A-Za-z0-9_.]))|(?:(?:"(?:[^"\\\\\n]|\\\\[^\n])*"|\'(?:[^\'\\\\\n]|\\\\[^\n])*\'))|(?:\\$\\{[^{}\n]*\\})|\\Z|([\\s\\S]))'
