"""Server-sent events, read incrementally from raw bytes (no line-by-line decoding)."""

from __future__ import annotations

from collections.abc import AsyncIterator

DONE = b"[DONE]"


async def data_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield the `data` payload of each event as it completes; comments and other fields are skipped."""
    buf = b""
    async for piece in chunks:
        buf += piece
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            event, buf = buf[:end], buf[end + 2 :]
            data = _data_of(event)
            if data is not None:
                yield data
    tail = buf.strip()
    if tail:
        data = _data_of(tail)
        if data is not None:
            yield data


def _data_of(event: bytes) -> bytes | None:
    parts = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None
