"""Parser for the column expressions of mapping specs.

Grammar (deliberately small)::

    expr   := call | column | literal
    call   := NAME '(' [arg (',' arg)*] ')'
    arg    := expr | NAME '=' literal
    literal:= 'text' | "text" | number | true | false | null

``repair_mojibake(name)``, ``uuid_from_key(member_id, entity='account')`` and
``ny_local_to_utc(zero_date_to_null(expires_at))`` are all valid.
"""

from __future__ import annotations

import re

from transform.mapping_spec import Call, Column, Expr, Literal_

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[(),=])
    )""",
    re.VERBOSE,
)


class ExpressionError(ValueError):
    """The text is not a valid expression; the message says where and why."""


def _tokens(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(
                f"unexpected character {text[pos:].strip()[:1]!r} at offset {pos}"
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(kind: str, value: str) -> object:
    if kind == "str":
        return value[1:-1].encode().decode("unicode_escape")
    if kind == "num":
        return float(value) if "." in value else int(value)
    return {"true": True, "false": False, "null": None}[value]


def parse_expression(text: str) -> Expr:
    """Parse ``text`` into an expression tree, or raise ExpressionError."""
    tokens = _tokens(text)
    if not tokens:
        raise ExpressionError("empty expression")
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal pos
        tok = peek()
        if tok is None:
            raise ExpressionError(f"expression ends early; expected {expected or 'more'}")
        if expected is not None and tok[1] != expected:
            raise ExpressionError(f"expected {expected!r} but found {tok[1]!r}")
        pos += 1
        return tok

    def expr() -> Expr:
        kind, value = take()
        if kind in ("str", "num") or (kind == "name" and value in ("true", "false", "null")):
            return Literal_(_literal(kind, value))
        if kind != "name":
            raise ExpressionError(f"expected a column or a transform, found {value!r}")
        nxt = peek()
        if nxt is None or nxt[1] != "(":
            return Column(value)
        take("(")
        args: list[Expr] = []
        params: list[tuple[str, object]] = []
        while True:
            tok = peek()
            if tok is not None and tok[1] == ")":
                take(")")
                break
            if (
                tok is not None
                and tok[0] == "name"
                and pos + 1 < len(tokens)
                and tokens[pos + 1][1] == "="
            ):
                take()
                take("=")
                lit_kind, lit_value = take()
                if lit_kind == "name" and lit_value not in ("true", "false", "null"):
                    params.append((tok[1], lit_value))  # bare words are strings: entity=account
                elif lit_kind in ("str", "num", "name"):
                    params.append((tok[1], _literal(lit_kind, lit_value)))
                else:
                    raise ExpressionError(f"parameter {tok[1]} needs a value, found {lit_value!r}")
            else:
                if params:
                    raise ExpressionError(
                        f"positional argument after keyword parameters in {value}(...)"
                    )
                args.append(expr())
            sep = peek()
            if sep is not None and sep[1] == ",":
                take(",")
            elif sep is None or sep[1] != ")":
                raise ExpressionError(f"expected ',' or ')' in {value}(...)")
        return Call(value, tuple(args), tuple(params))

    tree = expr()
    if pos != len(tokens):
        raise ExpressionError(f"unexpected {tokens[pos][1]!r} after the expression")
    return tree
