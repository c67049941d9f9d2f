"""regexp - regexp: and pcre: pattern tables

SYNOPSIS
    regexp:/path/file    regexp:{ { rule }, { rule } }
    pcre:/path/file      pcre:{ { rule }, { rule } }

DESCRIPTION
    Pattern tables as in regexp_table(5) and pcre_table(5).  A logical line
    is one of

        /pattern/flags result      use result when pattern matches
        !/pattern/flags result     use result when pattern does not match
        if /pattern/flags          match the rules up to endif only when
        if !/pattern/flags         the pattern matches (does not match)
        endif

    The delimiter may be any non-alphanumeric, non-blank character; a
    backslash protects a delimiter inside the pattern.  Rules are tried in
    order; the first match wins.  The result may refer to parenthesised
    subexpressions as $1..$9 (also ${n} and $(n)); $$ is a literal "$".
    The key is matched as given (case-insensitively by default): these
    tables are never subject to key folding.

    Patterns are compiled with Python's re module.  regexp: patterns are
    POSIX regular expressions and are first translated: bracket
    expressions with [:class:] names, "\\" literal inside brackets, "$" only
    at the end of the string, "." matching a newline, \\< \\> word boundaries,
    and basic (non-extended) syntax when the x flag is turned off.  pcre:
    patterns need fewer changes: (?<name> groups, \\z, \\Z and POSIX classes.

    Flag compatibility (flag: default, Postel support):
        regexp  i (on)  case-insensitive        yes
                x (on)  extended syntax (ERE)   yes; off = POSIX basic syntax
                m (off) multi-line ^ $          yes
        pcre    i (on)  case-insensitive        yes
                m (off) MULTILINE               yes
                s (on)  DOTALL                  yes
                x (off) EXTENDED                yes (re.VERBOSE)
                A (off) ANCHORED                yes (match at the start only)
                E (off) DOLLAR_ENDONLY          yes ("$" becomes \\Z)
                U (off) UNGREEDY                yes (quantifier greediness swapped)
                X (off) EXTRA                   yes (Python rejects unknown escapes anyway)

    Known differences: POSIX regexp matching is leftmost-longest while
    Python's is leftmost-first, which can change what $n refers to for
    alternations such as /(a|ab)(c|bcd)/; PCRE-only syntax that Python
    lacks (\\Q..\\E, recursion, callouts) is rejected as a regex error.

DIAGNOSTICS
    As Postfix: "regexp map FILE, line N: ..." (or "pcre map") warnings;
    the bad rule is skipped and the rest of the table is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postel import log
from postel.tables import LookupFlags, Table, TableError
from postel.tables.source import logical_lines, split_braced

POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
    "lower": "a-z", "space": r" \t\n\r\f\v", "blank": r" \t", "punct": r"!-/:-@\[-`{-~",
    "print": r" -~", "graph": r"!-~", "cntrl": r"\x00-\x1f\x7f", "xdigit": "0-9A-Fa-f",
    "word": "a-zA-Z0-9_",
}

_GLIBC_MESSAGES = (
    ("missing ), unterminated subpattern", "Unmatched ( or \\("),
    ("unbalanced parenthesis", "Unmatched ) or \\)"),
    ("unterminated character set", "Unmatched [, [^, [:, [., or [="),
    ("nothing to repeat", "Invalid preceding regular expression"),
    ("multiple repeat", "Invalid preceding regular expression"),
    ("bad escape (end of pattern)", "Trailing backslash"),
    ("bad character range", "Invalid range end"),
)


class PatternError(Exception):
    """A pattern that cannot be compiled; the text is the diagnostic."""


def _bracket(pattern: str, i: int) -> tuple[str, int]:
    """_bracket - translate the POSIX bracket expression at pattern[i] == '['."""
    n = len(pattern)
    j = i + 1
    out = ["["]
    if j < n and pattern[j] == "^":
        out.append("^")
        j += 1
    first = True
    while j < n:
        ch = pattern[j]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        first = False
        if ch == "[" and j + 1 < n and pattern[j + 1] in ":.=":
            kind = pattern[j + 1]
            end = pattern.find(kind + "]", j + 2)
            if end < 0:
                raise PatternError("Unmatched [, [^, [:, [., or [=")
            name = pattern[j + 2:end]
            if kind == ":":
                if name not in POSIX_CLASSES:
                    raise PatternError("Invalid character class name")
                out.append(POSIX_CLASSES[name])
            else:
                out.append(re.escape(name))
            j = end + 2
            continue
        if ch in "\\[]^":
            out.append("\\" + ch)
        else:
            out.append(ch)
        j += 1
    raise PatternError("Unmatched [, [^, [:, [., or [=")


def translate_posix(pattern: str, *, extended: bool = True, multiline: bool = False) -> str:
    """translate_posix - a POSIX (glibc) regular expression as a Python one."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "[":
            text, i = _bracket(pattern, i)
            out.append(text)
            continue
        if ch == "\\":
            if i + 1 >= n:
                raise PatternError("Trailing backslash")
            nxt = pattern[i + 1]
            i += 2
            if not extended and nxt in "(){}|+?":
                out.append(nxt)
            elif nxt in "wWsSbB" or nxt.isdigit():
                out.append("\\" + nxt)
            elif nxt in "<>":
                out.append(r"\b")
            elif nxt == "`":
                out.append(r"\A")
            elif nxt == "'":
                out.append(r"\Z")
            else:
                out.append(re.escape(nxt))
            continue
        i += 1
        if not extended and ch in "(){}|+?":
            out.append("\\" + ch)
        elif ch == "$" and not multiline:
            out.append(r"\Z")
        elif ch == "(" and i < n and pattern[i] == "?":
            raise PatternError("Invalid preceding regular expression")
        else:
            out.append(ch)
    return "".join(out)


_QUANT = re.compile(r"[*+?]|\{\d+(?:,\d*)?\}")


def translate_pcre(pattern: str, *, ungreedy: bool = False, dollar_endonly: bool = False) -> str:
    """translate_pcre - a PCRE pattern as a Python one."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            out.append({"z": r"\Z", "Z": r"(?=\n?\Z)", "h": r"[ \t]"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == "[":
            text, i = _pcre_bracket(pattern, i)
            out.append(text)
            continue
        if pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        if ch == "$" and dollar_endonly:
            out.append(r"\Z")
            i += 1
            continue
        m = _QUANT.match(pattern, i) if ungreedy else None
        if m and not (ch == "?" and out and out[-1] == "("):
            out.append(m.group())
            i = m.end()
            if i < n and pattern[i] == "?":
                i += 1          # "x*?" is greedy under U
            elif i < n and pattern[i] == "+":
                out.append("+")
                i += 1
            else:
                out.append("?")
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _pcre_bracket(pattern: str, i: int) -> tuple[str, int]:
    """_pcre_bracket - copy a PCRE class, expanding [:name:] and escaping '['."""
    n = len(pattern)
    j = i + 1
    out = ["["]
    if j < n and pattern[j] == "^":
        out.append("^")
        j += 1
    if j < n and pattern[j] == "]":
        out.append(r"\]")
        j += 1
    while j < n:
        ch = pattern[j]
        if ch == "\\" and j + 1 < n:
            out.append(pattern[j:j + 2])
            j += 2
            continue
        if ch == "]":
            out.append("]")
            return "".join(out), j + 1
        if pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            name = pattern[j + 2:end] if end > 0 else ""
            if name.lstrip("^") in POSIX_CLASSES:
                if name.startswith("^"):
                    raise PatternError("negated POSIX class is not supported")
                out.append(POSIX_CLASSES[name])
                j = end + 2
                continue
        out.append("\\[" if ch == "[" else ch)
        j += 1
    raise PatternError(f"error in regex at offset {i}: missing terminating ] for character class")


@dataclass(slots=True)
class Rule:
    """Rule - one pattern line: a match rule, an if, or an endif."""

    kind: str                   # "match", "if", "endif"
    regex: re.Pattern[str] | None
    negate: bool
    anchored: bool
    result: list[str | int] = field(default_factory=list)  # text pieces and group numbers
    line: int = 0
    skip_to: int = 0            # for "if": index after the matching endif


_REPL = re.compile(r"\$(?:(\$)|(\d)|\{([^}]*)\}|\(([^)]*)\)|([A-Za-z_]\w*)|)")


def parse_result(text: str) -> list[str | int] | str:
    """parse_result - result text as pieces; an error message string on bad syntax."""
    pieces: list[str | int] = []
    pos = 0
    for m in _REPL.finditer(text):
        pieces.append(text[pos:m.start()])
        pos = m.end()
        dollar, digit, braced, paren, name = m.groups()
        if dollar:
            pieces.append("$")
        elif digit:
            pieces.append(int(digit))
        elif braced is not None or paren is not None:
            inner = braced if braced is not None else paren
            if not inner.isdigit():
                return f'non-numeric replacement index "{inner}"'
            pieces.append(int(inner))
        elif name:
            return f'non-numeric replacement index "{name}"'
        else:
            return "bad replacement syntax"
    pieces.append(text[pos:])
    return [p for p in pieces if p != ""]


class PatternTable(Table):
    """PatternTable - the shared engine of regexp: and pcre:."""

    type_name = "regexp"
    fixed_keys = False
    default_flags = "ix"
    known_flags = "ixm"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        if name.strip().startswith("{"):
            items = split_braced(name)
            if items is None:
                raise TableError(f'{self.type_name} map: syntax error: "{name}"')
            lines = items
            self.label = name
        else:
            try:
                with open(name, encoding="utf-8", errors="surrogateescape") as fp:
                    lines = fp.readlines()
            except OSError as exc:
                raise TableError(f"open {name}: {exc.strerror}") from None
            self.watch(name)
            self.label = name
        self.rules = self._compile(lines)

    def warn(self, line: int | None, msg: str) -> None:
        """warn - a Postfix-style table syntax warning."""
        where = f", line {line}" if line else ""
        log.warning("%s map %s%s: %s", self.type_name, self.label, where, msg)

    def _split_pattern(self, text: str, line: int) -> tuple[str, str, bool, str] | None:
        """_split_pattern - (pattern, flags, negate, rest) of "!/re/flags rest"."""
        negate = False
        while text.startswith("!"):
            negate = not negate
            text = text[1:].lstrip()
        if not text or text[0].isalnum() or text[0].isspace():
            self.warn(line, "ignoring unrecognized request")
            return None
        delim = text[0]
        i = 1
        while i < len(text) and text[i] != delim:
            i += 2 if text[i] == "\\" else 1
        if i >= len(text):
            self.warn(line, f'no closing regexp delimiter "{delim}": ignoring this rule')
            return None
        pattern = text[1:i].replace("\\" + delim, delim) if delim != "\\" else text[1:i]
        j = i + 1
        while j < len(text) and not text[j].isspace():
            j += 1
        return pattern, text[i + 1:j], negate, text[j:].strip()

    def _make_regex(self, pattern: str, flag_text: str, line: int):
        """_make_regex - (compiled, anchored, group count) or None after a warning."""
        active = set(self.default_flags)
        for ch in flag_text:
            if ch not in self.known_flags:
                self.warn(line, f'unknown regexp option "{ch}": skipping this rule')
                return None
            active ^= {ch}
        try:
            source, reflags = self._translate(pattern, active)
            regex = re.compile(source, reflags)
        except PatternError as exc:
            self.warn(line, str(exc))
            return None
        except (re.error, RecursionError, OverflowError) as exc:
            self.warn(line, self._re_message(exc))
            return None
        return regex, "A" in active

    def _translate(self, pattern: str, active: set[str]) -> tuple[str, int]:
        reflags = 0
        if "i" in active:
            reflags |= re.IGNORECASE
        if "m" in active:
            reflags |= re.MULTILINE
        else:
            reflags |= re.DOTALL
        return translate_posix(pattern, extended="x" in active, multiline="m" in active), reflags

    def _re_message(self, exc: Exception) -> str:
        msg = getattr(exc, "msg", str(exc))
        for py, glibc in _GLIBC_MESSAGES:
            if msg.startswith(py):
                return glibc
        return "Invalid regular expression"

    def _compile(self, lines: list[str]) -> list[Rule]:
        rules: list[Rule] = []
        stack: list[int] = []
        for number, text in logical_lines(lines, self.warn):
            rule = self._parse_line(number, text)
            if rule is None:
                continue
            if rule.kind == "endif":
                if not stack:
                    self.warn(number, "ignoring ENDIF without matching IF")
                    continue
                rules[stack.pop()].skip_to = len(rules) + 1
            rules.append(rule)
            if rule.kind == "if":
                stack.append(len(rules) - 1)
        for index in stack:
            self.warn(rules[index].line, "IF has no matching ENDIF")
            rules[index].skip_to = len(rules)
        return rules

    def _parse_line(self, number: int, text: str) -> Rule | None:
        word = re.match(r"(?i)(if|endif)(?![A-Za-z0-9])", text)
        if word and word.group(1).lower() == "endif":
            if text[5:].strip():
                self.warn(number, "ignoring extra text after ENDIF")
            return Rule("endif", None, False, False, line=number)
        body = text[2:].lstrip() if word else text
        parts = self._split_pattern(body, number)
        if parts is None:
            return None
        pattern, flag_text, negate, rest = parts
        made = self._make_regex(pattern, flag_text, number)
        if made is None:
            return None
        regex, anchored = made
        if word:
            if rest:
                self.warn(number, f'ignoring extra text after IF statement: "{rest}"')
            return Rule("if", regex, negate, anchored, line=number)
        if not rest:
            self.warn(number, "no replacement text: using empty string")
        pieces = parse_result(rest)
        if isinstance(pieces, str):
            if pieces.startswith("non-numeric"):
                self.warn(number, pieces)
            self.warn(number, "bad replacement syntax: skipping this rule")
            return None
        groups = [p for p in pieces if isinstance(p, int)]
        if groups and negate:
            self.warn(number, "$number found in negative match replacement text: "
                              "skipping this rule")
            return None
        for g in groups:
            if g > regex.groups:
                self.warn(number, f'out of range replacement index "{g}": skipping this rule')
                return None
        return Rule("match", regex, negate, anchored, pieces, number)

    def get(self, key: str) -> str | None:
        """get - the first matching rule's result, with $n substituted."""
        i, rules = 0, self.rules
        while i < len(rules):
            rule = rules[i]
            if rule.kind == "endif":
                i += 1
                continue
            m = rule.regex.match(key) if rule.anchored else rule.regex.search(key)
            if rule.kind == "if":
                i = i + 1 if (m is None) == rule.negate else rule.skip_to
                continue
            if (m is None) == rule.negate:
                if m is None:
                    return "".join(p for p in rule.result if isinstance(p, str))
                return "".join(p if isinstance(p, str) else (m.group(p) or "")
                               for p in rule.result)
            i += 1
        return None


class PcreTable(PatternTable):
    """PcreTable - Perl-compatible patterns."""

    type_name = "pcre"
    default_flags = "is"
    known_flags = "imsxAEUX"

    def _translate(self, pattern: str, active: set[str]) -> tuple[str, int]:
        reflags = 0
        for ch, flag in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL),
                         ("x", re.VERBOSE)):
            if ch in active:
                reflags |= flag
        source = translate_pcre(pattern, ungreedy="U" in active,
                                dollar_endonly="E" in active and "m" not in active)
        return source, reflags

    def _re_message(self, exc: Exception) -> str:
        pos = getattr(exc, "pos", None)
        msg = getattr(exc, "msg", str(exc))
        msg = {"missing ), unterminated subpattern": "missing closing parenthesis",
               "unterminated character set": "missing terminating ] for character class",
               }.get(msg, msg)
        return f"error in regex at offset {pos if pos is not None else 0}: {msg}"


def register(register_type) -> None:
    """register - regexp: and pcre:."""
    register_type("regexp", PatternTable)
    register_type("pcre", PcreTable)
