"""Images an agent's tool returns (Claude Code's Read of a picture, Codex's view_image) reach the model.

Chat tool messages carry text only; the images follow the turn's tool messages in a user message,
labelled with the call they came from, in both dialects, instead of being dropped.
"""

from __future__ import annotations

from proxy.dialects.messages_request import to_chat as messages_to_chat
from proxy.dialects.responses_request import to_chat as responses_to_chat

PNG = "iVBORw0KGgo="


def test_an_anthropic_tool_result_with_an_image_keeps_it() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}},
                                          {"type": "tool_use", "id": "t2", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"type": "tool_result", "tool_use_id": "t2", "content": "ok"},
            {"type": "text", "text": "what do you see?"}]}]}
    chat = messages_to_chat(body)["messages"]
    roles = [m["role"] for m in chat]
    assert roles == ["user", "assistant", "tool", "tool", "user", "user"]
    assert "image" in chat[2]["content"] and chat[3]["content"] == "ok"
    image = chat[4]["content"]
    assert image[0] == {"type": "text", "text": "<system-reminder>Image(s) returned by tool call t1:</system-reminder>"}
    assert image[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert chat[5]["content"] == "what do you see?"


def test_a_responses_function_call_output_with_an_image_keeps_it() -> None:
    url = f"data:image/png;base64,{PNG}"
    body = {"model": "m", "input": [
        {"type": "message", "role": "user", "content": "look"},
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_image", "image_url": url}]},
        {"type": "message", "role": "user", "content": "and now?"}]}
    chat, _, _ = responses_to_chat(body, [])
    msgs = chat["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user", "user"]
    assert msgs[3]["content"][1] == {"type": "image_url", "image_url": {"url": url, "detail": "auto"}}
    assert msgs[4]["content"] == "and now?"
