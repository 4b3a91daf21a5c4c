"""Keeping secret values out of everything that is written or shown.

Each secret is masked as written and in the forms a command commonly prints it in: JSON
string escaping (``ensure_ascii`` on and off), shell quoting (``shlex.quote``, bash's
``printf %q`` in a UTF-8 and in the C locale), URL encoding (``quote`` with and without
``/`` safe, ``quote_plus``, upper- and lower-case hex) and base64 (standard and URL-safe,
padded or not, and the part of a longer encoding fully set by the secret's bytes, for each
of the three byte alignments: ``base64("user:" + secret)`` in an Authorization header).
The forms are computed once, when the secret is added; a derived form shorter than
``MIN_DERIVED`` is dropped, so a short secret does not mask random text (the value itself
is always masked). Every occurrence of every form is found first and overlapping ones are
merged, so two secrets that overlap in the text are both masked in full, by one mask.

In a byte stream a value may arrive split across reads: the stream masker holds back only
the bytes that could still begin a form (the longest end of the data that is a proper
prefix of one), and the recorder releases them after a short quiet time.

What still cannot be caught: any other encoding of a secret (a hex dump, ``xxd``, octal,
UTF-16, HTML entities, ``\\/``-escaped JSON, base32, line-wrapped base64 past its first
line as ``base64`` prints it, a hash, compressed or encrypted output), a secret
transformed (reversed, upper-cased, cut into pieces, with a character in between, only a
part of it printed), a derived form shorter than ``MIN_DERIVED`` characters, and a secret
written so slowly that the quiet time passes in the middle of it: the bytes held back are
released then, and the rest arrives in clear. Masking is a safety net for accidents, not a
defence against a command that means to reveal a secret.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any, AnyStr
from urllib.parse import quote, quote_plus

from runbook.format.variables import MASK

_MASK_BYTES = MASK.encode()
MIN_DERIVED = 6
"""Characters a derived form needs to be masked: shorter ones would hit ordinary text."""


class Masker:
    """Replaces every form of every secret value, wherever it appears."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._forms: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        """Each value's forms, and the anchors that stand for them in the fast path."""
        self._text: tuple[str, ...] = ()
        self._bytes: tuple[bytes, ...] = ()
        self._anchors_text: tuple[str, ...] = ()
        """The anchors: one in every form, so without any of them no form is present."""
        self._probes: tuple[tuple[bytes, bytes], ...] = ()
        """Each anchor as bytes, after its rarest byte: absent, it needs no search."""
        self._prefixes: dict[bytes, list[tuple[int, bytes]]] = {}
        """The forms' proper prefixes (length, form) by their last two bytes (the first
        byte alone for one byte long), longest first: the candidates to hold back."""
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        if not value or value in self._forms:
            return
        forms = frozenset({value} | derived_forms(value))
        self._forms[value] = (forms, _anchors(forms))
        every = sorted(set().union(*(f for f, _ in self._forms.values())), key=len)
        seen = sorted(set().union(*(a for _, a in self._forms.values())), key=len)
        self._text, self._anchors_text = tuple(every), tuple(seen)
        self._bytes = tuple(map(_encode, every))
        self._probes = tuple((_rarest(a), a) for a in map(_encode, seen))
        prefixes: dict[bytes, list[tuple[int, bytes]]] = {}
        for form in self._bytes:
            for k in range(1, len(form)):
                prefixes.setdefault(form[max(0, k - 2) : k], []).append((k, form))
        for candidates in prefixes.values():
            candidates.sort(reverse=True)
        self._prefixes = prefixes

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, s: str) -> str:
        for form in self._anchors_text:
            if form in s:
                return _replace(s, _spans(s, self._text), MASK)
        return s

    def data(self, b: bytes) -> bytes:
        return _replace(b, self.spans(b), _MASK_BYTES) if self.present(b) else b

    def present(self, b: bytes) -> bool:
        """Whether any form may be in ``b``: the fast path, a few ``in`` checks."""
        return any(rare in b and anchor in b for rare, anchor in self._probes)

    def spans(self, b: bytes) -> list[tuple[int, int]]:
        """Where the forms are in ``b``: sorted, overlapping occurrences merged."""
        return _spans(b, self._bytes)

    def pending(self, b: bytes) -> int:
        """How many of the last bytes of ``b`` could still begin a form (held back)."""
        n = len(b)
        for k, form in self._prefixes.get(b[-2:], ()) if n > 1 else ():
            if k <= n and b[n - k] == form[0] and form.startswith(b[n - k :]):
                return k
        return 1 if n and b[-1:] in self._prefixes else 0

    def deep(self, obj: Any) -> Any:
        """Mask every string inside a JSON-like structure (an event before it is written)."""
        if not self:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.deep(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.deep(v) for v in obj]
        return obj

    def stream(self) -> StreamMasker:
        return StreamMasker(self)


class StreamMasker:
    """Masks one output stream chunk by chunk, values split across chunks included."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._held = b""
        self._covered = 0
        """How many of the held bytes a mask already released stands for."""

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that are safe to release now; a possible start of a form is held."""
        if not self._masker:
            return chunk
        return self._release(self._held + chunk if self._held else chunk, final=False)

    def flush(self) -> bytes:
        """Everything held, masked: at the end of the stream, or after a quiet time."""
        return self._release(self._held, final=True)

    def _release(self, data: bytes, *, final: bool) -> bytes:
        masker, covered = self._masker, self._covered
        cut = len(data) if final else len(data) - masker.pending(data)
        if not covered and not masker.present(data):
            self._held = data[cut:]
            return data if cut == len(data) else data[:cut]
        spans = masker.spans(data)
        if covered:
            spans = _merge([(0, covered), *spans])
        out: list[bytes] = []
        pos = 0
        for start, end in spans:
            shown = covered and start == 0  # its mask was released already
            if start >= cut and not shown:
                break
            out.append(data[pos:start])
            if not shown:
                out.append(_MASK_BYTES)
            pos = end
        self._covered = max(0, pos - cut)
        out.append(data[pos:cut])
        self._held = data[cut:]
        return b"".join(out)


def derived_forms(value: str) -> set[str]:
    """The forms of ``value`` a command may print it in, each long enough to mask."""
    raw = _encode(value)
    as_json = json.dumps(value)[1:-1]
    forms = {
        as_json,
        json.dumps(value, ensure_ascii=False)[1:-1],
        # Go's encoding/json also escapes &, < and > for HTML.
        as_json.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"),
        shlex.quote(value),
        _bash_quote(value, utf8=True),
        _bash_quote(value, utf8=False),
        # Inside '...' as `set -x`, ${V@Q} and jq's @sh write it; inside "..." as
        # `declare -p` and `export -p` do.
        value.replace("'", "'\\''"),
        re.sub(r'([\\$"`])', r"\\\1", value),
    }
    urls = (quote(value, safe=""), quote(value), quote_plus(value), quote(value, safe="!'()*"))
    for url in urls:  # the last: JavaScript's encodeURIComponent, jq's @uri
        forms |= {url, re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), url)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms |= {whole, whole.rstrip("=")}
        for align in range(3):  # the secret after 0, 1 or 2 bytes of a 3-byte group
            inner = encode(bytes(align) + raw).decode()
            forms.add(inner[-(-8 * align // 6) : 8 * (align + len(raw)) // 6])
    return {f for f in forms if len(f) >= MIN_DERIVED and f != value}


_BASH_SPECIAL = frozenset(" \t\n!\"$&'()*,;<>?[\\]^`{|}")
_ANSI_C = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
_ANSI_C |= {"\x1b": "E", "'": "'", "\\": "\\"}


def _bash_quote(value: str, *, utf8: bool) -> str:
    """``printf %q``: backslashes, or ``$'...'`` for a value with a non-printable."""

    def printable(c: str) -> bool:
        return " " <= c < "\x7f" or (utf8 and c > "\x9f" and c.isprintable())

    if not all(map(printable, value)):
        out = []
        for c in value:
            if c in _ANSI_C:
                out.append("\\" + _ANSI_C[c])
            else:
                out.append(c if printable(c) else "".join(f"\\{b:03o}" for b in _encode(c)))
        return "$'" + "".join(out) + "'"
    out = []
    for i, c in enumerate(value):
        if (
            c in _BASH_SPECIAL
            or (c == "#" and i == 0)
            or (c == "~" and (i == 0 or value[i - 1] in ":="))
        ):
            out.append("\\")
        out.append(c)
    return "".join(out)


_RUN = re.compile(r"[A-Za-z0-9._~-]{4,}")
"""Characters no escaping above changes: a run of them is shared by many forms."""


def _anchors(forms: frozenset[str]) -> frozenset[str]:
    """Few strings, one inside every form (a run common to several, else the form), so
    that output holding none of them is known to hold no form: a few ``in`` checks."""
    left = sorted(forms, key=len)
    anchors = set()
    while left:
        candidates = [*_RUN.findall(left[0]), left[0]]
        best = max(candidates, key=lambda r: (sum(r in form for form in left), len(r)))
        anchors.add(best)
        left = [form for form in left if best not in form]
    return frozenset(anchors)


_COMMON = b" \n\teaoinstrlhdcum0123456789pfgwybv.,:-_/=k\"'()[]{}xjqzSTAECIRDMNPLOB"
"""Bytes of command output, most common first (roughly): the last ones are rarer."""


def _rarest(anchor: bytes) -> bytes:
    """The byte of ``anchor`` least likely in output: a ``memchr`` rules most chunks out."""
    return bytes([max(anchor, key=lambda c: _COMMON.find(c) % (len(_COMMON) + 1))])


def _encode(s: str) -> bytes:
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def _spans(haystack: AnyStr, forms: Sequence[AnyStr]) -> list[tuple[int, int]]:
    found = []
    for form in forms:
        i = haystack.find(form)
        while i >= 0:
            found.append((i, i + len(form)))
            i = haystack.find(form, i + 1)
    return _merge(sorted(found))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping spans as one (sorted input); spans that only touch stay apart."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _replace(s: AnyStr, spans: list[tuple[int, int]], mask: AnyStr) -> AnyStr:
    out = []
    pos = 0
    for start, end in spans:
        out += [s[pos:start], mask]
        pos = end
    out.append(s[pos:])
    return s[:0].join(out)
