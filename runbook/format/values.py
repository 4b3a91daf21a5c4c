"""Parsing of the small value types that options and front matter share.

Each parser returns the value or raises :class:`ValueProblem` with a message written
for the runbook author ("expected a duration such as 30s, 5m or 1h").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator

from runbook.format.model import Amount, Duration


class ValueProblem(ValueError):
    """A value that does not parse; the message is shown to the author as is."""


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
NAME = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]+\Z")
"""A block's name: anything a Runme cell name can be (Runme checks nothing: `test:e2e:ci`,
`_build:vm`) but for spaces and control characters, which no prompt or record could show."""
GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
"""A host group's name: no `:`, which would read as a port in `on:`."""
_DURATION_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|s|m|h|d)")
MAX_DURATION = 30 * 86400.0
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_AMOUNT = re.compile(r"([0-9]{1,6})(%?)\Z")
_COUNT = re.compile(r"[0-9]{1,6}\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENT_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAR_REF = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\$))")

TRUE_WORDS = frozenset({"true", "yes", "on"})
FALSE_WORDS = frozenset({"false", "no", "off"})


def near(word: str, known: Iterable[str]) -> str | None:
    """The word of ``known`` that ``word`` is a slip of: the same but for case, ``_`` for
    ``-``, or one edit (two for long words; a swap of neighbours counts as one). Keys that
    are nowhere near belong to another tool and are left alone."""
    folded = word.lower().replace("_", "-")
    for candidate in known:
        if folded == candidate.lower().replace("_", "-"):
            return candidate
    limit = 2 if len(word) >= 5 else 1 if len(word) >= 4 else 0
    best = min(known, key=lambda k: _edits(folded, k.lower()), default=None)
    if best is not None and _edits(folded, best.lower()) <= limit:
        return best
    return None


def _edits(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean `x`?)`` for the closest known word, or an empty string."""
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""


def parse_duration(value: object) -> Duration:
    """``30s``, ``5m``, ``1h30m``, ``500ms``: a unit is required so that ``5`` is never a guess."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        hint = " (add a unit)" if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) else ""
        raise ValueProblem(f"expected a duration such as 30s, 5m or 1h, got {value!r}{hint}")
    if total > MAX_DURATION:
        raise ValueProblem(f"{text} is longer than 30 days")
    return Duration(text, total)


def parse_amount(value: object, *, allow_zero: bool) -> Amount:
    """``N`` or ``N%`` hosts."""
    text = (
        str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    )
    m = _AMOUNT.match(text)
    if not m:
        raise ValueProblem(f"expected a number of hosts such as 2 or 25%, got {value!r}")
    amount = Amount(int(m.group(1)), bool(m.group(2)))
    if amount.percent and amount.value > 100:
        raise ValueProblem(f"{amount} is more than 100%")
    if amount.value == 0 and not allow_zero:
        raise ValueProblem("a batch of 0 hosts would never finish")
    return amount


def parse_serial(value: object) -> tuple[Amount, ...]:
    """``1``, ``25%`` or a list ``1, 50%, 100%`` (YAML list or comma-separated text)."""
    if isinstance(value, list):
        items = value
    else:
        text = str(value).strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        items = text.split(",")
    if not items or any(str(i).strip() == "" for i in items):
        raise ValueProblem(f"expected batch sizes such as 1, 50%, 100%, got {value!r}")
    return tuple(parse_amount(i, allow_zero=False) for i in items)


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueProblem(f"expected true or false, got {value!r}")


def parse_count(value: object) -> int:
    text = (
        str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    )
    if not _COUNT.match(text):
        raise ValueProblem(f"expected a whole number below 1000000, got {value!r}")
    return int(text)


def parse_port(value: object) -> int:
    text = (
        str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    )
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= 65535:
        raise ValueProblem(f"expected a port number 1-65535, got {value!r}")
    return int(text)


def describe(value: object) -> str:
    """How a YAML or JSON value reads to an author: ``a list``, ``the boolean true``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (set, frozenset)):
        return "a set"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, (str, int, float)):
        return repr(value)
    return f"a {type(value).__name__} value"


def parse_text(value: object) -> str:
    """Free text: a string (a number from JSON is fine); anything else is a mistake."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        hint = "; quote it if you mean the word" if isinstance(value, bool) else ""
        raise ValueProblem(f"expected text, got {describe(value)}{hint}")
    text = str(value)
    if not text.strip():
        raise ValueProblem("must not be empty")
    if _SURROGATE.search(text):
        raise ValueProblem("contains a lone UTF-16 surrogate, which is not a character")
    return text


def variable_refs(text: str) -> Iterator[tuple[str, int]]:
    """Each ``$NAME`` / ``${NAME}`` in ``text`` with its offset; ``$$`` is a literal dollar."""
    for m in _VAR_REF.finditer(text):
        if m.group(3):
            continue
        if m.group(1) is not None:
            ident = _IDENT_PREFIX.match(m.group(1))
            if ident is None:
                continue
            yield ident.group(0), m.start()
        else:
            yield m.group(2), m.start()


def expand(text: str, values: dict[str, str], unknown: str | None = None) -> str:
    """Replace ``$NAME`` and ``${NAME}`` by their values; ``$$`` becomes ``$``.

    A name without a value is kept as written, or replaced by ``unknown`` when given.
    Only for display texts (gates, targets): command text is never rewritten.
    """

    def sub(m: re.Match[str]) -> str:
        if m.group(3):
            return "$"
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if name in values:
            return values[name]
        return m.group(0) if unknown is None else unknown.format(name=name)

    return _VAR_REF.sub(sub, text)
