"""A chat stream's reads into the engine's events: its SSE payloads split, checked and typed, and the plain
chunks a chat client may get as the upstream sent them kept as they came (`RawChunk`)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from routing.core import Event, RawChunk, ReasoningDelta, TextDelta, ToolCallDelta
from routing.errors import MemberFailure
from routing.request import Json
from routing.upstream import answers
from routing.upstream.sse import DONE, Splitter

_decode = msgspec.json.Decoder().decode


class Reader:
    """One stream's reads into events, appended to a list: one call per upstream read."""

    __slots__ = ("done", "member", "raw", "split", "started", "translate")

    def __init__(self, member: str, translate: Callable[[Json], list[Json] | None], raw: bool) -> None:
        self.member, self.translate, self.raw = member, translate, raw
        self.split = Splitter()
        self.started = False
        """Choice 0 has had a delta (the first names the role)."""
        self.done = False
        """The stream said it is over (`[DONE]`, or the translator's end)."""

    def __call__(self, piece: bytes | None, out: list[Event]) -> bool:
        """Append the events a read completes to `out` (plain chunks in a row as one `RawChunk`); True once
        the stream says it is over or ended (`piece` None: what it left unterminated is read first)."""
        if piece is None:
            self._read(self.split.close(), out, self.raw)
            return True
        if self.raw and piece.endswith(b"\n\n") and piece.find(b"\n") == len(piece) - 2 \
                and piece.startswith(b"data: {") and piece.find(b"\r") < 0 and not self.split.pending:
            # One whole event and nothing before it: a paced server's token, one a read, its payload what the
            # split would give. Kept as it came where plain (the framing the split strips and `_raw` adds
            # back); else read as the split's one payload, not tried as plain again. `find`, not `count`: it
            # stops at the first newline, and a one-byte find is memchr (a count is a loop a byte: 40k
            # instructions for a quick server's 6 KB read).
            data = piece[6:-2]
            text = answers.plain(data, self.started)
            if text is None:
                return self._read([data], out, False)
            self.started = True
            out.append(RawChunk(piece, 1, text))
            return False
        return self._read(self.split.feed(piece), out, self.raw)

    def _read(self, payloads: list[bytes], out: list[Event], raw: bool) -> bool:
        """`raw`: plain payloads may be kept as they came (False where they were tried already)."""
        if raw and len(payloads) > 2:  # a read of many events (a quick server's): its plain run checked at once
            k = len(payloads)
            while k > 0 and _ends(payloads[k - 1]):
                k -= 1
            said = answers.plain_all(payloads[:k], self.started) if k > 1 else None
            if said is not None:
                self.started = True
                out.append(_raw(payloads[:k], said))
                payloads = payloads[k:]  # the finish, the usage, `[DONE]`: read one by one below, as
                raw = False  # what they look like (a finish reason or usage is never plain): not tried as plain
        plain: list[bytes] = []
        texts: list[str] = []
        try:
            for data in payloads:
                if data == DONE:
                    self.done = True
                    return True
                if raw and data.find(b"\n") < 0:  # not `in`: see sse.py
                    text = answers.plain(data, self.started)
                    if text is not None:
                        self.started = True
                        plain.append(data)
                        texts.append(text)
                        continue
                event = _decode(data)
                if not isinstance(event, dict):
                    raise MemberFailure(self.member, "malformed stream event")
                if plain:
                    out.append(_raw(plain, texts))
                    plain, texts = [], []
                chunks = self.translate(event)
                if chunks is None:
                    self.done = True
                    return True
                for chunk in chunks:
                    got = answers.events(self.member, chunk)
                    self.started = self.started or any(
                        isinstance(e, (TextDelta, ReasoningDelta, ToolCallDelta)) and e.choice == 0 for e in got)
                    out += got
            return False
        finally:
            if plain:
                out.append(_raw(plain, texts))


def _ends(payload: bytes) -> bool:
    """A payload that ends a stream as servers send it: a finish reason, the usage, `[DONE]` (a guess from its
    bytes; `answers.plain_all` decides, and what it refuses is read one by one)."""
    return payload == DONE or payload.find(b'"finish_reason":"') >= 0 or payload.find(b'"usage":{') >= 0


def _raw(payloads: list[bytes], texts: list[str]) -> RawChunk:
    return RawChunk(b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n", len(payloads), "".join(texts))
