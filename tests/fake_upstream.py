"""A fake OpenAI-compatible upstream for tests: fixed answers, latency, failures, a request log.

Run as `python -m tests.fake_upstream --port N [--answer TEXT] [--latency-ms 50] [--fail http500]`.
It is a bare ASGI app served by uvicorn, so it behaves like a real server on the wire
(keep-alive, chunked SSE, disconnects) without any framework in between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvicorn

Scope = dict[str, Any]


class Upstream:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.requests = 0
        self.inflight = 0
        self.peak = 0
        self.probes = 0
        self.headers: dict[str, str] = {}
        """The most chat requests it ever had in flight at once (GET /stats): what a GPU would have held."""

    def log(self, **event: Any) -> None:
        if self.a.log:
            with open(self.a.log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"t": time.time(), "port": self.a.port, **event}) + "\n")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path.endswith("/models") or path == "/health":
            self.probes += 1
        if path.endswith("/models"):
            extra = {"max_model_len": self.a.max_model_len} if self.a.max_model_len else {}
            return await self.json(send, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake", **extra}
                for m in self.a.models.split(",")]})
        if path == "/props" and self.a.n_ctx:  # llama.cpp's server says its context size here
            return await self.json(send, 200, {"default_generation_settings": {"n_ctx": self.a.n_ctx}})
        if path == "/stats":
            return await self.json(send, 200, {"requests": self.requests, "inflight": self.inflight,
                                               "peak": self.peak, "probes": self.probes})
        if path == "/health":
            if self.a.loading:  # llama.cpp's answer while it loads the model
                return await self.json(send, 503, {"error": {"code": 503, "message": "Loading model",
                                                             "type": "unavailable_error"}})
            return await self.json(send, 200, {"status": "ok"})
        kind = next((k for k in ("/chat/completions", "/completions", "/embeddings") if path.endswith(k)), None)
        if kind is None:
            return await self.json(send, 404, {"detail": "Not Found"})
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        req = json.loads(body)
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests += 1
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await self.serve(req, kind, send, receive)
        finally:
            self.inflight -= 1

    async def serve(self, req: dict[str, Any], kind: str, send: Any, receive: Any) -> None:
        self.log(event="request", body=req, **({"headers": self.headers} if self.a.echo else {}))
        if self.a.loading:
            return await self.json(send, 503, {"error": {"code": 503, "message": "Loading model",
                                                         "type": "unavailable_error"}})
        if self.a.latency_ms and not await self.wait_or_disconnect(self.a.latency_ms / 1000, receive):
            return
        fail = self.a.fail
        if fail and (self.a.fail_first == 0 or self.requests <= self.a.fail_first):
            if fail == "timeout":
                await asyncio.sleep(3600)
            if fail.startswith("http"):
                status = int(fail[4:])
                said = f"fake failure {status}"
                if self.a.echo:  # as OpenAI's 401 quotes the key it was given ("Incorrect API key provided: sk-...")
                    said = f"Incorrect API key provided: {self.headers.get('authorization')}; you sent {req}"
                return await self.json(send, status, {"error": {"message": said,
                                                                "type": "server_error", "param": None, "code": None}})
        if req.get("model") not in self.a.models.split(",") and not self.a.any_model:
            return await self.json(send, 404, {"error": {"message": f"model {req.get('model')!r} not found",
                                                         "type": "invalid_request_error", "param": "model",
                                                         "code": "model_not_found"}})
        if kind == "/embeddings":
            await self.json(send, 200, self.embeddings(req))
        elif kind == "/completions":
            await self.legacy(req, send)
        elif req.get("stream"):
            await self.stream(req, send, receive)
        else:
            await self.json(send, 200, self.completion(req))
        self.log(event="done")

    async def wait_or_disconnect(self, seconds: float, receive: Any) -> bool:
        """Sleep, unless the client goes away first (logged: that is how tests see a cancel)."""
        sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
        listener = asyncio.ensure_future(receive())
        done, _ = await asyncio.wait({sleeper, listener}, return_when=asyncio.FIRST_COMPLETED)
        if listener in done and listener.result().get("type") == "http.disconnect":
            sleeper.cancel()
            self.log(event="disconnect")
            return False
        listener.cancel()
        return True

    def answer(self) -> str:
        """The fixed answer, or the next one of --answers-file (the last one repeats); with --echo, every
        header it was sent but the credentials (an upstream that repeats what it got, as attackers hope)."""
        if self.a.echo:
            return "echo " + json.dumps({k: v for k, v in self.headers.items()
                                         if k not in ("authorization", "x-api-key", "api-key")})
        if not self.a.answers_file:
            return str(self.a.answer)
        with open(self.a.answers_file, encoding="utf-8") as f:
            answers = json.load(f)
        return str(answers[min(self.requests - 1, len(answers) - 1)])

    def words(self) -> list[str]:
        words = self.answer().split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def usage(self) -> dict[str, int]:
        n = len(self.words())
        return {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}

    def tool_call(self, req: dict[str, Any]) -> tuple[str, str] | None:
        """With --tool-call, a request is answered with the call until a tool result is in the conversation;
        of several calls, the first whose tool the request offers."""
        if not self.a.tool_call or any(m.get("role") == "tool" for m in req.get("messages") or ()):
            return None
        offered = {(t.get("function") or {}).get("name") for t in req.get("tools") or ()}
        calls = [tuple(c.split(":", 1)) for c in self.a.tool_call]
        name, args = next((c for c in calls if c[0] in offered), calls[0])
        return name, args

    def embeddings(self, req: dict[str, Any]) -> dict[str, Any]:
        inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
        dims = int(req.get("dimensions") or 4)
        data = []
        for i, text in enumerate(inputs):
            vec = [round(((len(str(text)) + i) % 7 + j) / 10, 3) for j in range(dims)]
            if req.get("encoding_format") == "base64":
                import base64
                import struct
                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()  # type: ignore[assignment]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(len(str(t).split()) for t in inputs)
        return {"object": "list", "data": data, "model": req["model"],
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    async def legacy(self, req: dict[str, Any], send: Any) -> None:
        text = self.answer() + (" <suffix:" + req["suffix"] + ">" if req.get("suffix") else "")
        base = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": req["model"]}
        usage = {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 5 + len(text.split())}
        if not req.get("stream"):
            return await self.json(send, 200, {**base, "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}], "usage": usage})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        events = [{**base, "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}]}
                  for w in (p if i == 0 else " " + p for i, p in enumerate(text.split(" ")))]
        events.append({**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]})
        if (req.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": usage})
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": body})

    def completion(self, req: dict[str, Any]) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": self.answer()}
        finish = "stop"
        if call := self.tool_call(req):
            name, args = call
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]}
            finish = "tool_calls"
        logprobs = None
        if req.get("logprobs") and self.a.logprob is not None:
            logprobs = {"content": [{"token": w, "logprob": self.a.logprob, "bytes": None, "top_logprobs": []}
                                    for w in self.words()]}
        return {"id": "fake-1", "object": "chat.completion", "created": int(time.time()), "model": req["model"],
                "choices": [{"index": 0, "message": msg, "logprobs": logprobs, "finish_reason": finish}],
                "usage": self.usage()}

    async def stream(self, req: dict[str, Any], send: Any, receive: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        base = {"id": "fake-1", "object": "chat.completion.chunk", "created": int(time.time()), "model": req["model"]}

        async def event(obj: Any) -> None:
            data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            await send({"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True})

        words = self.words()
        deltas: list[dict[str, Any]] = [{"content": w} for w in words]
        finish = "stop"
        if call := self.tool_call(req):
            name, args = call
            half = len(args) // 2
            deltas = [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                       "function": {"name": name, "arguments": args[:half]}}]},
                      {"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]}]
            finish = "tool_calls"
        if not self.a.no_role:
            deltas[0]["role"] = "assistant"
        try:
            for i, delta in enumerate(deltas):
                if self.a.fail == "truncate" and i == len(deltas) // 2:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                await event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                if self.a.token_ms:
                    await asyncio.sleep(self.a.token_ms / 1000)
            await event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if (req.get("stream_options") or {}).get("include_usage") and not self.a.no_usage:
                await event({**base, "choices": [], "usage": self.usage()})
            await event(b"[DONE]")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, asyncio.CancelledError):
            self.log(event="disconnect")
            raise

    async def json(self, send: Any, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--models", default="fake")
    p.add_argument("--any-model", action="store_true", help="answer whatever model is asked for")
    p.add_argument("--answer", default="The answer is 42.")
    p.add_argument("--answers-file", default=None, help="JSON list: the Nth request gets the Nth answer")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--token-ms", type=float, default=0)
    p.add_argument("--fail", default=None, help="http500|http429|timeout|truncate")
    p.add_argument("--fail-first", type=int, default=0, help="fail only the first N requests (0: all)")
    p.add_argument("--no-role", action="store_true", help="omit the role delta, as some servers do")
    p.add_argument("--no-usage", action="store_true", help="ignore stream_options.include_usage (llama.cpp)")
    p.add_argument("--tool-call", action="append", default=None,
                   help="NAME:JSON_ARGS (repeatable: the first whose tool the request offers)")
    p.add_argument("--log", default=None)
    p.add_argument("--echo", action="store_true",
                   help="answer with the headers it got (credentials left out), log them, quote the key in failures")
    p.add_argument("--max-model-len", type=int, default=0, help="list the models with vLLM's max_model_len")
    p.add_argument("--n-ctx", type=int, default=0, help="answer GET /props with this n_ctx, as llama.cpp does")
    p.add_argument("--loading", action="store_true", help="answer 503 'Loading model' like llama.cpp while loading")
    p.add_argument("--logprob", type=float, default=None, help="per-token logprob sent when logprobs are asked")
    a = p.parse_args()
    uvicorn.run(Upstream(a), host="127.0.0.1", port=a.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
