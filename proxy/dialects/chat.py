"""OpenAI chat completions: the engine's own dialect, so nothing is converted."""

from __future__ import annotations

import msgspec

from proxy.dialects import Context, Json

_encode = msgspec.json.Encoder().encode


class ChatWriter:
    def start(self) -> bytes:
        return b""

    def chunk(self, chunk: Json) -> bytes:
        return b"data: " + _encode(chunk) + b"\n\n"

    def failed(self, status: int, envelope: Json) -> bytes:
        return b"data: " + _encode(envelope) + b"\n\n"

    def end(self) -> bytes:
        return b"data: [DONE]\n\n"


class Chat:
    name = "chat"

    async def prepare(self, body: Json, ctx: Context) -> Json:
        return body

    def answer(self, out: Json, ctx: Context) -> Json:
        return out

    def writer(self, ctx: Context) -> ChatWriter:
        return ChatWriter()

    async def finished(self, ctx: Context) -> None:
        return None


CHAT = Chat()
