"""Keeping secret values out of everything that is written or shown.

Secrets are masked in text (events, prompts, notes) and in output byte streams, where a
value may arrive split across two reads: the stream masker holds back just enough bytes
to see a split value whole before anything is released.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runbook.format.variables import MASK

_MASK_BYTES = MASK.encode()


class Masker:
    """Replaces every secret value, longest first, wherever it appears."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        if value and value not in self._text:
            self._text.append(value)
            self._text.sort(key=len, reverse=True)
            self._bytes = [v.encode("utf-8", "surrogateescape") for v in self._text]

    def __bool__(self) -> bool:
        return bool(self._text)

    @property
    def longest(self) -> int:
        return len(self._bytes[0]) if self._bytes else 0

    def text(self, s: str) -> str:
        for value in self._text:
            if value in s:
                s = s.replace(value, MASK)
        return s

    def data(self, b: bytes) -> bytes:
        for value in self._bytes:
            if value in b:
                b = b.replace(value, _MASK_BYTES)
        return b

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

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that are safe to release now; a possible secret prefix is held back."""
        if not self._masker:
            return chunk
        data = self._masker.data(self._held + chunk)
        keep = self._masker.longest - 1
        if keep <= 0:
            self._held = b""
            return data
        self._held = data[-keep:]
        return data[:-keep]

    def flush(self) -> bytes:
        data, self._held = self._held, b""
        return self._masker.data(data) if self._masker else data
