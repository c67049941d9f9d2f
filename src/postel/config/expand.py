"""expand - $name expansion of parameter values

SYNOPSIS
    from postel.config.expand import expand, ExpandError
    text = expand("$myhostname ESMTP", lookup)

DESCRIPTION
    Implements the parameter expansion of postconf(5) "PARAMETER EXPANSION":

      $name, ${name}, $(name)   the value of name (empty when undefined)
      ${name?value}             value when $name is non-empty, else empty
      ${name?{value}}           the same, value may contain any text
      ${name:value}             value when $name is empty or undefined
      ${name:{value}}           the same
      ${name?{a}:{b}}           a when $name is non-empty, else b
      ${{a} op {b} ? {x} : {y}} x when the comparison holds, else y; op is
                                == != < <= > >= (numbers) or <level <=level
                                >level >=level (compatibility levels)
      $$                        a literal $

    The chosen text is itself expanded.  lookup(name) returns the raw value
    of a parameter, or None when it is undefined; values found through
    lookup are expanded recursively, at most MAX_DEPTH levels deep.
    Problems raise ExpandError with Postfix's wording ("empty macro name",
    "truncated macro reference", "unreasonable macro call nesting").
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_DEPTH = 100
_NAME = re.compile(r"[A-Za-z0-9_]+")
_OPS = ("==", "!=", "<=level", ">=level", "<level", ">level", "<=", ">=", "<", ">")


class ExpandError(ValueError):
    """A macro syntax error or expansion loop."""


Lookup = Callable[[str], "str | None"]


def expand(text: str, lookup: Lookup, *, undefined: set[str] | None = None,
           depth: int = 0) -> str:
    """expand - expand every $ reference in text."""
    if "$" not in text:
        return text
    if depth > MAX_DEPTH:
        raise ExpandError(f'unreasonable macro call nesting: "{text}"')
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        i = j + 1
        if i < n and text[i] == "$":
            out.append("$")
            i += 1
        elif i < n and text[i] in "{(":
            close = "}" if text[i] == "{" else ")"
            end = _match(text, i, text[i], close)
            if end < 0:
                raise ExpandError(f'truncated macro reference: "{text}"')
            out.append(_braced(text[i + 1:end], text, lookup, undefined, depth))
            i = end + 1
        else:
            m = _NAME.match(text, i)
            if not m:
                raise ExpandError(f'empty macro name: "{text}"')
            out.append(_value(m.group(), lookup, undefined, depth))
            i = m.end()
    return "".join(out)


def _match(text: str, start: int, open_: str, close: str) -> int:
    """_match - index of the bracket closing the one at start, or -1."""
    level = 0
    for k in range(start, len(text)):
        c = text[k]
        if c == open_:
            level += 1
        elif c == close:
            level -= 1
            if level == 0:
                return k
    return -1


def _value(name: str, lookup: Lookup, undefined: set[str] | None, depth: int) -> str:
    """_value - the expanded value of one parameter."""
    raw = lookup(name)
    if raw is None:
        if undefined is not None:
            undefined.add(name)
        return ""
    if depth + 1 > MAX_DEPTH:
        raise ExpandError(f'unreasonable macro call nesting: "{name}"')
    return expand(raw, lookup, undefined=undefined, depth=depth + 1)


def _braced(inner: str, text: str, lookup: Lookup, undefined: set[str] | None,
            depth: int) -> str:
    """_braced - expand the inside of ${...} or $(...)."""
    if inner.lstrip().startswith("{"):
        return _compare(inner, text, lookup, undefined, depth)
    m = _NAME.match(inner)
    if not m:
        raise ExpandError(f'empty macro name: "{text}"')
    name, rest = m.group(), inner[m.end():]
    if not rest:
        return _value(name, lookup, undefined, depth)
    if rest[0] not in "?:":
        raise ExpandError(f'attribute name syntax error at: "...{name}>>>{rest}"')
    value = _value(name, lookup, undefined, depth)
    if_set, if_unset = _alternatives(rest[1:], rest[0])
    chosen = if_set if value else if_unset
    return expand(chosen, lookup, undefined=undefined, depth=depth + 1)


def _alternatives(spec: str, op: str) -> tuple[str, str]:
    """_alternatives - (text if set, text if unset) for ?value, :value, ?{a}:{b}."""
    if spec.startswith("{"):
        first, after = _group(spec, 0)
        if first is not None:
            after_text = spec[after:].lstrip()
            if op == "?" and after_text.startswith(":"):
                second = after_text[1:].lstrip()
                if second.startswith("{"):
                    g, end = _group(second, 0)
                    if g is not None:
                        second = g
                return first, second
            if not after_text:
                spec = first
    return (spec, "") if op == "?" else ("", spec)


def _group(text: str, start: int) -> tuple[str | None, int]:
    """_group - the content of the {...} group at start, and the index after it."""
    end = _match(text, start, "{", "}")
    if end < 0:
        return None, start
    return text[start + 1:end], end + 1


def _compare(inner: str, text: str, lookup: Lookup, undefined: set[str] | None,
             depth: int) -> str:
    """_compare - ${{a} op {b} ? {x} : {y}} (Postfix 3.0 and later)."""
    s = inner.strip()
    left, k = _group(s, 0)
    rest = s[k:].lstrip() if left is not None else ""
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if left is None or op is None:
        raise ExpandError(f'syntax error in conditional expression: "{text}"')
    rest = rest[len(op):].lstrip()
    right, k = _group(rest, 0) if rest.startswith("{") else (None, 0)
    rest = rest[k:].lstrip()
    if right is None or not rest.startswith("?"):
        raise ExpandError(f'syntax error in conditional expression: "{text}"')
    rest = rest[1:].lstrip()
    yes, k = _group(rest, 0) if rest.startswith("{") else (None, 0)
    rest = rest[k:].lstrip()
    no = ""
    if rest.startswith(":"):
        rest = rest[1:].lstrip()
        no, k = _group(rest, 0) if rest.startswith("{") else (None, 0)
        rest = rest[k:].strip()
    if yes is None or no is None or rest:
        raise ExpandError(f'syntax error in conditional expression: "{text}"')
    a = expand(left.strip(), lookup, undefined=undefined, depth=depth + 1)
    b = expand(right.strip(), lookup, undefined=undefined, depth=depth + 1)
    chosen = yes if _holds(a, op, b, text) else no
    return expand(chosen.strip(), lookup, undefined=undefined, depth=depth + 1)


def _holds(a: str, op: str, b: str, text: str) -> bool:
    """_holds - evaluate one comparison."""
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op.endswith("level"):
        x, y = compat_level(a, text), compat_level(b, text)
        op = op[:-5]
    else:
        try:
            x, y = int(a), int(b)  # type: ignore[assignment]
        except ValueError:
            raise ExpandError(f'non-numerical operand in "{text}"') from None
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def compat_level(value: str, text: str = "") -> tuple[int, ...]:
    """compat_level - "3.6" -> (3, 6, 0); "0" -> (0, 0, 0)."""
    parts = value.strip().split(".")
    try:
        nums = tuple(int(p) for p in parts)
    except ValueError:
        raise ExpandError(f'bad compatibility level "{value}" in "{text or value}"') from None
    return (nums + (0, 0, 0))[:3]
