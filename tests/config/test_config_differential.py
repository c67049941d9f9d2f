"""Differential tests: postel.config expansion against the real Postfix postconf."""

import random
import subprocess

import pytest

from peerlib import require_peer
from postel.config import ConfigError, load_config

HELPERS = "myhostname = mx.example.org\na = 1\nb = two words\ne =\nchain = $a-$b\n"

SAMPLES = [
    "$a${a}$(a)",
    "${a?yes}|${zz?yes}|${a:no}|${zz:no}",
    "${a?{x y}}|${zz?{x}:{y}}|${a?{x}:{y}}|${e?{x}:{y}}",
    "$$a and $$",
    "${a?x}y}",
    "${e?x}|${e:y}",
    "$chain/${chain}",
    "${a?{${b}}:{n}}",
    "${{$a} == {1} ? {eq} : {ne}}",
    "${{$b} != {two words} ? {ne} : {eq}}",
    "${{3.6} <level {2} ? {old} : {new}}",
    "${{10} >= {9} ? {ge} : {lt}}",
    "$myhostname ESMTP $biff",
    "$mydomain/$myorigin",
    "x\n  continued\n# comment inside\n   more",
    "{ a b } , c",
    "$undefined_thing end",
]


def batch(tmp_path, values):
    """batch - main.cf defining v0..vN (referenced from a known parameter so that
    postconf treats them as used)."""
    names = [f"v{i}" for i in range(len(values))]
    body = HELPERS + "".join(f"{n} = {v}\n" for n, v in zip(names, values, strict=True))
    body += "smtpd_banner = " + " ".join("$" + n for n in names) + "\n"
    (tmp_path / "main.cf").write_text(body)
    return names


def real_postconf(tmp_path, values):
    """real_postconf - Postfix's postconf -x -h for each value (None: it failed)."""
    postconf = require_peer("postconf")
    names = batch(tmp_path, values)
    proc = subprocess.run([postconf, "-c", str(tmp_path), "-x", "-h", *names],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    return proc.stdout.splitlines()


def ours(tmp_path, values):
    """ours - Postel's expanded values, whitespace-normalized as postconf prints them."""
    names = batch(tmp_path, values)
    cfg = load_config(str(tmp_path))
    out = []
    for n in names:
        try:
            out.append(" ".join(cfg.get(n).split()))
        except ConfigError:
            return None
    return out


@pytest.mark.peer("postconf")
def test_expansion_matches_postconf(tmp_path):
    assert ours(tmp_path, SAMPLES) == real_postconf(tmp_path, SAMPLES)


@pytest.mark.peer("postconf")
@pytest.mark.parametrize("value", ["end$", "${a", "$(a}"])
def test_errors_match_postconf(tmp_path, value):
    assert real_postconf(tmp_path, [value]) is None
    assert ours(tmp_path, [value]) is None


TOKENS = ["$a", "${b}", "$(a)", "${a?x}", "${e:y}", "${zz?{p q}:{r}}", "$$", "text", " ", ",",
          "${a?{$b}}", "$chain", "{", "}", "?", ":", "${e?{x}:{$a}}"]


@pytest.mark.peer("postconf")
def test_expansion_matches_postconf_random(tmp_path):
    rng = random.Random(5321)
    values = ["".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 6))).strip() or "x"
              for _ in range(60)]
    expected = real_postconf(tmp_path, values)
    assert expected is not None
    assert ours(tmp_path, values) == [" ".join(e.split()) for e in expected]
