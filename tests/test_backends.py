from __future__ import annotations

import httpx
import pytest
import respx

from proxy.errors import status_of
from routing.config import BackendConfig
from routing.core import Finish, TextDelta, UsageEvent
from routing.errors import MemberFailure, MemberTimeout, UpstreamStatus
from routing.request import Request
from routing.upstream.backends import OpenAIBackend

URL = "http://up.test/v1"
BODY = {"model": "ultra-instinct", "messages": [{"role": "user", "content": "hi"}], "x_vendor": {"k": 1}}


def backend(client: httpx.AsyncClient, **kw: object) -> OpenAIBackend:
    return OpenAIBackend("goku", BackendConfig(url=URL, model="m1", **kw), client)  # type: ignore[arg-type]


@respx.mock
async def test_forwards_every_field_with_the_upstream_model_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOKU_KEY", "sk-test")
    route = respx.post(URL + "/chat/completions").respond(json={"choices": [{"message": {"content": "ok"}}]})
    async with httpx.AsyncClient() as c:
        await backend(c, api_key_env="GOKU_KEY").complete(Request.of(BODY))
    sent = route.calls.last.request
    import json

    body = json.loads(sent.content)
    assert body["model"] == "m1" and body["x_vendor"] == {"k": 1} and body["stream"] is False
    assert sent.headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("response", "status", "message"),
    [
        (httpx.Response(404, json={"error": {"message": "no such model", "type": "invalid_request_error",
                                             "param": "model", "code": "model_not_found"}}), 404, "no such model"),
        (httpx.Response(404, json={"detail": "Not Found"}), 404, "Not Found"),
        (httpx.Response(400, json={"error": {"code": 400, "message": "context too long"}}), 400, "context too long"),
        (httpx.Response(500, text="boom"), 502, "HTTP 500: boom"),
    ],
)
@respx.mock
async def test_upstream_errors_in_every_dialect(response: httpx.Response, status: int, message: str) -> None:
    respx.post(URL + "/chat/completions").mock(return_value=response)
    async with httpx.AsyncClient() as c:
        with pytest.raises(UpstreamStatus) as e:
            await backend(c).complete(Request.of(BODY))
    assert status_of(e.value) == status and message in e.value.message
    assert e.value.member == "goku"


@respx.mock
async def test_transport_failures_name_the_member() -> None:
    respx.post(URL + "/chat/completions").mock(side_effect=httpx.ConnectError("nope"))
    async with httpx.AsyncClient() as c:
        with pytest.raises(MemberFailure, match="member 'goku' failed: cannot connect"):
            await backend(c).complete(Request.of(BODY))


@respx.mock
async def test_a_slow_member_times_out_as_a_timeout() -> None:
    respx.post(URL + "/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    async with httpx.AsyncClient() as c:
        with pytest.raises(MemberTimeout) as e:
            await backend(c, timeout_s=0.5).complete(Request.of(BODY))
    assert status_of(e.value) == 504 and e.value.kind == "timeout"


def _sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + e + b"\n\n" for e in events)


@respx.mock
async def test_a_stream_cut_before_its_end_is_an_error_not_an_answer() -> None:
    respx.post(URL + "/chat/completions").respond(
        content=_sse(b'{"choices":[{"index":0,"delta":{"content":"half"}}]}'),
        headers={"content-type": "text/event-stream"})
    async with httpx.AsyncClient() as c:
        chunks = []
        with pytest.raises(MemberFailure, match="ended before the answer was complete"):
            async for chunk in backend(c).stream(Request.of(BODY)):
                chunks.append(chunk)
    assert len(chunks) == 1


@respx.mock
async def test_an_error_event_in_the_stream_raises() -> None:
    respx.post(URL + "/chat/completions").respond(
        content=_sse(b'{"error":{"message":"out of memory"}}'), headers={"content-type": "text/event-stream"})
    async with httpx.AsyncClient() as c:
        with pytest.raises(MemberFailure, match="out of memory"):
            async for _ in backend(c).stream(Request.of(BODY)):
                pass


@respx.mock
async def test_streams_ask_upstream_for_usage() -> None:
    route = respx.post(URL + "/chat/completions").respond(
        content=_sse(b'{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}', b"[DONE]"),
        headers={"content-type": "text/event-stream"})
    async with httpx.AsyncClient() as c:
        got = [ch async for ch in backend(c).stream(Request.of(BODY))]
    import json

    assert json.loads(route.calls.last.request.content)["stream_options"] == {"include_usage": True}
    assert got[0] == TextDelta("a") and got[1] == Finish("stop")


@respx.mock
async def test_the_usage_after_a_first_chunk_that_also_finishes_is_read() -> None:
    """An answer so short that its text and finish reason come in one chunk still has its usage read from the
    chunk after: the stream is read to its end, not to its finish reason."""
    respx.post(URL + "/chat/completions").respond(
        content=_sse(b'{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}',
                     b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}',
                     b"[DONE]"),
        headers={"content-type": "text/event-stream"})
    async with httpx.AsyncClient() as c:
        events = [e async for e in backend(c).stream(Request.of(BODY))]
    assert [type(e) for e in events] == [TextDelta, Finish, UsageEvent]
    assert isinstance(events[2], UsageEvent) and events[2].usage.total_tokens == 6
