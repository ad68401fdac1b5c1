"""A chat stream's reads into the engine's events: its SSE payloads split, checked and typed, and the plain
chunks a chat client may get as the upstream sent them kept as they came (`RawChunk`)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from routing.core import Event, RawChunk, ReasoningDelta, TextDelta, ToolCallDelta
from routing.errors import MemberFailure
from routing.request import Json
from routing.upstream import answers
from routing.upstream.shape import Shape
from routing.upstream.sse import DONE, Splitter

_decode = msgspec.json.Decoder().decode
SHAPED_RUN = 8
"""The shortest run of plain chunks read by their shape (`Shape`; timeit: even at four, a gain at eight)."""


class Reader:
    """One stream's reads into events, appended to a list: one call per upstream read."""

    __slots__ = ("done", "learn", "member", "plain", "raw", "shape", "split", "started", "translate")

    def __init__(self, member: str, translate: Callable[[Json], list[Json] | None], raw: bool,
                 openai: bool = False) -> None:
        self.member, self.translate, self.raw = member, translate, raw
        self.plain = raw or openai
        """Plain chunks are looked for (`answers.plain`, in C), not decoded and checked field by field: `raw`, or
        `openai` (`translate` passes OpenAI's chunks on as they are). Kept as they came where `raw`; else a run of
        them is one `TextDelta`, the text `answers.events` gives each, joined: a dialect that rebuilds every
        event (Anthropic's, the Responses API's) writes a read's text once, not once a token."""
        self.split = Splitter()
        self.started = not raw
        """A plain chunk need not name the role: choice 0 has had a delta (its first names the role), or the
        stream is rebuilt (its writer names the role)."""
        self.done = False
        """The stream said it is over (`[DONE]`, or the translator's end)."""
        self.shape: Shape | None = None
        """How the last plain chunk read typed looks around its text (`Shape`): the next ones in a run
        that look the same are read without a typed decode, once a chunk has started the choice."""
        self.learn = 4
        """How many times more a shape is taken from a typed chunk (a stream whose chunks differ in more than
        their text, a timing or a counter, pays for it a few times, not once a read)."""

    def __call__(self, piece: bytes | None, out: list[Event]) -> bool:
        """Append the events a read completes to `out` (plain chunks in a row as one `RawChunk` or `TextDelta`);
        True once the stream says it is over or ended (`piece` None: what it left unterminated is read first)."""
        if piece is None:
            self._read(self.split.close(), out, self.plain)
            return True
        if self.plain and piece.endswith(b"\n\n") and piece.find(b"\n") == len(piece) - 2 \
                and piece.startswith(b"data: {") and piece.find(b"\r") < 0 and not self.split.pending:
            # One whole event and nothing before it: a paced server's token, one a read, its payload what the
            # split would give. Where plain, that payload kept as it came when relayed, or its text's delta when
            # rebuilt; else read as the split's one payload, not tried as plain again. `find`, not `count`: it
            # stops at the first newline, and a one-byte find is memchr (a count is a loop a byte: 40k
            # instructions for a quick server's 6 KB read).
            data = piece[6:-2]
            text = answers.plain(data, self.started)
            if text is None:
                return self._read([data], out, False)
            self._plain([data], [text], out)
            return False
        return self._read(self.split.feed(piece), out, self.plain)

    def _read(self, payloads: list[bytes], out: list[Event], plain: bool) -> bool:
        """`plain`: plain payloads are looked for (False where they were tried already)."""
        if plain and len(payloads) > 2:  # a read of many events (a quick server's): its plain run checked at once
            k = len(payloads)
            while k > 0 and _ends(payloads[k - 1]):
                k -= 1
            said = self._texts(payloads[:k]) if k > 1 else None
            if said is not None:
                self._plain(payloads[:k], said, out)
                payloads = payloads[k:]  # the finish, the usage, `[DONE]`: read one by one below, as
                plain = False  # what they look like (a finish reason or usage is never plain): not tried as plain
        run: list[bytes] = []
        texts: list[str] = []
        try:
            for data in payloads:
                if data == DONE:
                    self.done = True
                    return True
                if plain and data.find(b"\n") < 0:  # not `in`: see sse.py
                    text = answers.plain(data, self.started)
                    if text is not None:
                        self.started = True  # the first named the role: the next need not
                        run.append(data)
                        texts.append(text)
                        continue
                ended = answers.plain_end(data) if self.plain and _ends(data) else None
                if run:
                    self._plain(run, texts, out)
                    run, texts = [], []
                if ended is not None:  # a finish reason and the usage, read typed as the text before them
                    out += ended
                    continue
                event = _decode(data)
                if not isinstance(event, dict):
                    raise MemberFailure(self.member, "malformed stream event")
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
            if run:
                self._plain(run, texts, out)

    def _texts(self, run: list[bytes]) -> list[str] | None:
        """The texts of a run of payloads when every one is plain, else None: by the shape of the chunks before
        them, or the first two read typed and the rest by the second's shape, or all read typed. A short run is
        read typed: below eight chunks the comparisons and the shape's making cost what the decodes save."""
        if len(run) < SHAPED_RUN:
            return answers.plain_all(run, self.started)
        if self.shape is not None and self.started:
            texts = self.shape.texts(run)
            if texts is not None:
                return texts
        if self.learn:
            head = answers.plain_all(run[:2], self.started)
            if head is None:
                return None  # all of them are read typed below, one by one
            self.learn -= 1
            self.shape = Shape.of(run[1])  # a token's chunk, just read typed
            rest = self.shape.texts(run[2:]) if self.shape is not None else None
            if rest is None:  # the rest read typed, the two read already not again
                rest = answers.plain_all(run[2:], True)
            return None if rest is None else head + rest
        return answers.plain_all(run, self.started)

    def _plain(self, payloads: list[bytes], texts: list[str], out: list[Event]) -> None:
        """A run of plain chunks: kept as they came (`raw`), or their text as one `TextDelta` (none for empty
        ones, as `answers.events` gives none), `count` the chunks that said something."""
        if self.raw:
            self.started = True
            out.append(RawChunk(payloads, len(payloads), "".join(texts)))
            return
        text = "".join(texts)
        if text:
            self.started = True
            out.append(TextDelta(text, count=len(texts) - texts.count("")))


def _ends(payload: bytes) -> bool:
    """A payload that ends a stream as servers send it: a finish reason, the usage, `[DONE]` (a guess from its
    bytes; `answers.plain_all` decides, and what it refuses is read one by one)."""
    return payload == DONE or payload.find(b'"finish_reason":"') >= 0 or payload.find(b'"usage":{') >= 0

