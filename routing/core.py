"""The engine's one language: what a member answered, what a strategy streams, what it reports.

Every backend kind converts its own wire into these types (`Reply` for a whole answer, `Event`s for
a stream); every strategy takes and gives them; every dialect at the edge converts them into its
own shapes. Field names follow OpenAI's chat completions where one exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from routing.tokens import ZERO, Usage, total, usd

# The council report: the `council` extension object, what the members did.

Status = Literal["ok", "error", "timeout", "cancelled", "skipped"]


class MemberReport(msgspec.Struct, omit_defaults=True):
    name: str
    model: str
    status: Status
    latency_ms: int
    error: str | None = None
    usage: Usage | None = None
    usage_estimated: bool = False
    weight: float | None = None
    cluster: int | None = None
    role: str | None = None
    cost_usd: float | None = None
    cloud: bool = False
    queue_ms: int | None = None
    """Time waiting for a slot on its GPU (`[gpus.NAME] max-concurrent`)."""
    cold_start: bool = False
    """The model was not loaded when asked: its latency includes loading it."""
    endpoint: str | None = None
    """Which server of a pool answered (`urls`): its label, host:port by default."""


class ClusterReport(msgspec.Struct, omit_defaults=True):
    id: int
    members: list[str]
    weight: float
    preview: str


class SamplingWave(msgspec.Struct, omit_defaults=True):
    """An adaptive council after one wave: how many members had been asked, and the clusters' weights,
    heaviest first (what `rules.sample_more` decided from, kept so `shenron replay` can decide again)."""

    asked: int
    weights: list[float]
    confidence: float | None = None
    """After a first wave of one answer: that answer's logprob confidence (`confident-first`)."""


class IterationReport(msgspec.Struct, omit_defaults=True):
    """One attempt of the code ladder."""

    attempt: int
    rung: int
    coder: str
    thinking: str
    compiled: bool | None
    """None: no check exists for the language here (the validators still judged it)."""
    check_output: str
    scores: dict[str, float]
    score: float
    cost_usd: float
    latency_ms: int
    language: str | None = None
    issues: list[str] = []
    invalid: dict[str, str] = {}
    """Validators left out of the score, and why (nonsense, failure, skipped)."""
    note: str | None = None


class RungReport(msgspec.Struct, omit_defaults=True):
    rung: int
    coder: str
    thinking: str
    status: Literal["passed", "failed", "skipped", "not reached"]
    attempts: int = 0
    reason: str | None = None


class CouncilReport(msgspec.Struct, omit_defaults=True):
    virtual_model: str
    strategy: str
    winner: str | None = None
    members: list[MemberReport] = []
    degraded: bool = False
    decided_by: str | None = None
    agreement: float | None = None
    majority: bool | None = None
    """Whether the winning claim had more than half of the answering weight (a council's vote)."""
    clusters: list[ClusterReport] | None = None
    latency_ms: int = 0
    note: str | None = None
    cost_usd: float = 0.0
    cached: bool = False
    usage: Usage | None = None
    """What every member call together spent (the response's own `usage` is the answer's)."""
    score: float | None = None
    pass_score: float | None = None
    iterations: list[IterationReport] | None = None
    rungs: list[RungReport] | None = None
    # cascade
    answered_by: str | None = None
    """The virtual model whose answer the client got."""
    escalated: bool | None = None
    escalated_because: str | None = None
    why: str | None = None
    confidence: float | None = None
    confidence_source: str | None = None
    escalation_skipped: str | None = None
    first: CouncilReport | None = None
    """The first model's report, when its answer was overruled."""
    # degradation under load
    degraded_from: str | None = None
    degraded_because: str | None = None
    degrade_skipped: str | None = None
    session: str | None = None
    """The conversation the request belongs to, as the ledger keeps it (`shenron usage --by session`)."""
    samples_asked: int | None = None
    """An adaptive council: how many of its members were asked, and why it stopped (`sampling_stopped`)."""
    sampling_stopped: str | None = None
    sampling_waves: list[SamplingWave] | None = None

    def totalled(self) -> CouncilReport:
        """With `cost_usd` and `usage` summed over its members."""
        self.cost_usd = usd(sum(m.cost_usd or 0.0 for m in self.members))
        self.usage = total(m.usage for m in self.members)
        return self

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.setdefault("degraded", self.degraded)
        out.setdefault("cost_usd", self.cost_usd)
        if self.answered_by is not None:  # a cascade says whether it escalated, and how sure it was
            out.setdefault("escalated", bool(self.escalated))
            out.setdefault("confidence", self.confidence)
        return out


def finish_of(reason: str | None, called: bool) -> str:
    """An answer's finish reason: `tool_calls` when it called a tool and the server said only "stop"
    (llama.cpp's servers do), else the server's, else "stop"."""
    if called and reason in (None, "stop"):
        return "tool_calls"
    return reason or "stop"


class ToolCall(msgspec.Struct):
    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them: a JSON text (not always valid)."""


class Answer(msgspec.Struct, omit_defaults=True):
    """One choice of an answer."""

    text: str | None = None
    tool_calls: list[ToolCall] = []
    reasoning: str | None = None
    finish_reason: str = "stop"
    logprobs: Any = None
    """The chat API's `logprobs` object, as the server sent it."""
    index: int = 0

    def says_something(self) -> bool:
        return bool((self.text or "").strip() or self.tool_calls)


class Reply(msgspec.Struct, omit_defaults=True):
    """One call's whole answer: its choices (one, unless the client asked for `n`), and what it used."""

    choices: list[Answer]
    usage: Usage | None = None
    fingerprint: str | None = None

    @property
    def answer(self) -> Answer:
        return self.choices[0]


class Result(msgspec.Struct):
    """What a strategy gives for a whole answer: the reply the client gets, and the council report."""

    reply: Reply
    report: CouncilReport


# Stream events, a tagged union. Deltas carry the index of their choice (0 unless the client asked for `n`).

class TextDelta(msgspec.Struct, tag="text", omit_defaults=True):
    text: str
    logprobs: Any = None
    choice: int = 0
    count: int = 1
    """The upstream chunks whose text this is (a read's run of plain ones is one delta: `Reader`)."""


class ReasoningDelta(msgspec.Struct, tag="reasoning", omit_defaults=True):
    text: str
    choice: int = 0


class ToolCallDelta(msgspec.Struct, tag="tool_call", omit_defaults=True):
    """A tool call's first delta carries its id and name; later ones add to its arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    choice: int = 0


class Finish(msgspec.Struct, tag="finish", omit_defaults=True):
    reason: str = "stop"
    choice: int = 0


class UsageEvent(msgspec.Struct, tag="usage"):
    """What the answer the client gets used (sent once, before the report)."""

    usage: Usage


class Heartbeat(msgspec.Struct, tag="heartbeat"):
    """Nothing happened for a while (a council deliberating): each dialect says so in its own way."""


class Report(msgspec.Struct, tag="report"):
    report: CouncilReport


class RawChunk(msgspec.Struct, tag="raw", gc=False):
    """Upstream chat.completion.chunks that need nothing changed but their id and model (one choice's
    text, each checked: `answers.plain`), kept as the payloads of the server-sent events they came in (one
    read's worth), so a chat client's stream is relayed, not rebuilt. Only a call that asked for them
    (`Call.relay`) gets these."""

    payloads: list[bytes]
    """Each event's `data`, the bytes as the upstream sent them (the split's pieces, not copied again)."""
    count: int
    """How many: a field, not a property (the member reads it for every read of a stream)."""
    text: str

    @property
    def data(self) -> bytes:
        """The events as they came (one line of `data` each, as every server sends its chunks)."""
        return b"data: " + b"\n\ndata: ".join(self.payloads) + b"\n\n"


Event = TextDelta | ReasoningDelta | ToolCallDelta | Finish | UsageEvent | Heartbeat | Report | RawChunk
Delta = TextDelta | ReasoningDelta | ToolCallDelta | Finish


def says_something(e: Event) -> bool:
    """An event that carries an answer: text, reasoning, a tool call or a finish reason."""
    return isinstance(e, (ToolCallDelta, Finish)) or (isinstance(e, (TextDelta, ReasoningDelta, RawChunk))
                                                       and bool(e.text))


PIECE = 48
"""Characters per text delta when a whole answer is replayed as a stream."""


def replay(answer: Answer) -> Iterator[Delta]:
    """A whole answer as stream deltas: reasoning, text in pieces, each tool call with its id and name
    first and its arguments after (as OpenAI streams them), then the finish."""
    c = answer.index
    if answer.reasoning:
        yield ReasoningDelta(answer.reasoning, choice=c)
    text = answer.text or ""
    for start in range(0, len(text), PIECE):
        yield TextDelta(text[start:start + PIECE], choice=c)
    for i, tc in enumerate(answer.tool_calls):
        yield ToolCallDelta(i, tc.id, tc.name, choice=c)
        if tc.arguments:
            yield ToolCallDelta(i, arguments=tc.arguments, choice=c)
    yield Finish(answer.finish_reason, choice=c)


def replay_result(result: Result) -> Iterator[Event]:
    for a in result.reply.choices:
        yield from replay(a)
    yield UsageEvent(result.reply.usage or ZERO)
    yield Report(result.report)


class Collector:
    """Assembles a stream's deltas into the whole answer they spell (to keep it in the cache)."""

    def __init__(self) -> None:
        self.text: dict[int, list[str]] = {}
        self.reasoning: dict[int, list[str]] = {}
        self.calls: dict[int, dict[int, list[str]]] = {}
        self.heads: dict[tuple[int, int], tuple[str | None, str | None]] = {}
        self.finish: dict[int, str] = {}
        self.logprobs: dict[int, list[Any]] = {}
        self.usage: Usage | None = None
        self.report: CouncilReport | None = None

    def add(self, e: Event) -> None:
        if isinstance(e, TextDelta):
            self.text.setdefault(e.choice, []).append(e.text)
            if isinstance(e.logprobs, dict):
                self.logprobs.setdefault(e.choice, []).extend(e.logprobs.get("content") or ())
        elif isinstance(e, RawChunk):  # a relayed chunk is choice 0's text
            self.text.setdefault(0, []).append(e.text)
        elif isinstance(e, ReasoningDelta):
            self.reasoning.setdefault(e.choice, []).append(e.text)
        elif isinstance(e, ToolCallDelta):
            self.calls.setdefault(e.choice, {}).setdefault(e.index, []).append(e.arguments)
            if e.id is not None or e.name is not None:
                old = self.heads.get((e.choice, e.index), (None, None))
                self.heads[(e.choice, e.index)] = (e.id or old[0], e.name or old[1])
        elif isinstance(e, Finish):
            self.finish[e.choice] = e.reason
        elif isinstance(e, UsageEvent):
            self.usage = e.usage
        elif isinstance(e, Report):
            self.report = e.report

    def answers(self) -> list[Answer]:
        indexes = sorted(set(self.text) | set(self.reasoning) | set(self.calls) | set(self.finish)) or [0]
        out = []
        for i in indexes:
            calls = []
            for n, parts in sorted(self.calls.get(i, {}).items()):
                id, name = self.heads.get((i, n), (None, None))
                calls.append(ToolCall(id or f"call_{n}", name or "", "".join(parts)))
            text = "".join(self.text.get(i, ())) if i in self.text or not calls else None
            out.append(Answer(text=text, tool_calls=calls,
                              reasoning="".join(self.reasoning[i]) if i in self.reasoning else None,
                              finish_reason=finish_of(self.finish.get(i), bool(calls)),
                              logprobs={"content": self.logprobs[i]} if i in self.logprobs else None, index=i))
        return out
