"""A plain chunk's shape: a quick server's run of token chunks read by comparing their bytes around the text,
not by a typed decode of each (`answers.plain` decides what is plain; this only says that the next chunks are
the same chunk with another text)."""

from __future__ import annotations

from itertools import repeat
from operator import getitem

import msgspec

_strings = msgspec.json.Decoder(list[str]).decode
_string = msgspec.json.Decoder(str).decode
_CONTENT = b'"content":"'


class Shape:
    """The bytes around the content string of a chunk `answers.plain` took: a chunk that is the same bytes around
    another JSON string is as plain (it has every field the first one has, the same, but its text), and its
    text is that string. A read's run of such chunks (a quick server's) is read by comparing their ends and
    decoding their strings at once, not by a typed decode of every chunk (half of what reading such a read
    cost). Servers write every token's chunk the same way but for its text; where one does not, `texts`
    says None and the chunks are read typed, as before. A lone chunk (a paced server's token) is read typed:
    one decode costs less than the comparisons around it."""

    __slots__ = ("middle", "prefix", "size", "suffix")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self.prefix, self.suffix, self.size = prefix, suffix, len(prefix) + len(suffix)
        self.middle = slice(len(prefix), -len(suffix))

    @classmethod
    def of(cls, payload: bytes) -> Shape | None:
        """`payload`'s shape: it must be a chunk `answers.plain` took, its content spelled `"content":"` once."""
        at = payload.find(_CONTENT)
        if at < 0 or payload.find(_CONTENT, at + 1) >= 0:
            return None
        start = end = at + len(_CONTENT)
        while (end := payload.find(b'"', end)) >= 0:
            k = end
            while payload[k - 1] == 0x5C:  # a backslash
                k -= 1
            if (end - k) % 2 == 0:  # not escaped: the string's end
                return cls(payload[:start], payload[end:])
            end += 1
        return None

    def texts(self, payloads: list[bytes]) -> list[str] | None:
        """The texts of chunks of this shape, in order; None unless every one is."""
        # compared and cut by `map`, in C (no Python frame a chunk)
        if min(map(len, payloads)) < self.size or not all(map(bytes.startswith, payloads, repeat(self.prefix))) \
                or not all(map(bytes.endswith, payloads, repeat(self.suffix))):
            return None
        middles: list[bytes] = list(map(getitem, payloads, repeat(self.middle)))  # type: ignore[arg-type]
        try:
            if b"".join(middles).find(b'"') >= 0:
                # an escaped quote (code), or a quote that ends the string early in a chunk of another shape:
                # each such middle must be one whole string (then the list below splits where they do)
                for m in middles:
                    if m.find(b'"') >= 0:
                        _string(b'"' + m + b'"')
            texts = _strings(b'["' + b'","'.join(middles) + b'"]')
        except msgspec.DecodeError:
            return None
        return texts if len(texts) == len(payloads) else None
