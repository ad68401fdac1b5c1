"""`cascade`: one fast virtual model answers; another takes over when it matters.

Escalation rules (pure, in `routing.decide.rules`), in order:
1. `asked`: the client sent `extra_body={"shenron": {"validate": true}}` or `x-shenron-validate: 1`;
2. `risk-word`: the last user message contains a configured risk word (whole word, any case);
3. `low-confidence`: the first answer's confidence is below `min-confidence`.

Confidence comes from the first answer's token logprobs (asked for, and removed again when
the client did not ask): exp(mean logprob). When the backend sends none and a
`second-opinion` backend is configured, it is asked in parallel and the confidence is the
agreement of the two answers (1.0 when the vote reduces them to one claim, else their word
similarity). With neither, the confidence is unknown and does not escalate.

The first two rules are known before anything is asked, so such a request goes straight to
`escalate-to` (streamed live). Otherwise a non-streamed request costs one call of `first` when
it is not escalated; a streamed one is buffered behind heartbeats until the confidence is
known, unless `min-confidence` is 0 (nothing can follow), when it streams live.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import msgspec

from routing import wire
from routing.config import Config
from routing.core import CouncilReport, Event, Report, Result, replay_result
from routing.decide import rules
from routing.errors import MemberFailure, NotAllowed
from routing.fanout import stop
from routing.member import Members
from routing.models import CascadeModel
from routing.report import Timer
from routing.request import Json
from routing.strategies.base import NESTED, Backends, Call, Strategy, waiting
from routing.vote.claims import NO_QUESTION, Question
from routing.vote.vote import canonical, similarity


def nested(call: Call) -> dict[str, Any]:
    """Extras for a call the cascade makes on the client's behalf: its own decision record is the cascade's."""
    return {**call.extras, NESTED: True}


def inner_call(call: Call) -> Call:
    return dataclasses.replace(call, extras=nested(call))


def agreement_of(a: str, b: str, question: str = "") -> float:
    """1 when two answers make the same claim (read against the question), else how alike their words are."""
    asked = Question.of(question) if question else NO_QUESTION
    return 1.0 if canonical(a, asked) == canonical(b, asked) else round(similarity(a, b), 4)


def _no_top(logprobs: Any) -> Any:
    """OpenAI's logprobs as a request without `top_logprobs` gets them: each token's alternatives empty."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return logprobs
    return {**logprobs, "content": [{**t, "top_logprobs": []} if isinstance(t, dict) else t for t in content]}


class Cascade:
    label = "cascade"

    def __init__(self, name: str, vm: CascadeModel, backends: Backends) -> None:
        self.name = name
        self.vm = vm
        self.backends = backends
        self.models: Mapping[str, Strategy] = {}

    @classmethod
    def from_config(cls, name: str, vm: CascadeModel, backends: Backends, cfg: Config | None = None) -> Cascade:
        return cls(name, vm, backends)

    def bind(self, models: Mapping[str, Strategy]) -> None:
        """The router's virtual models, once all are built (`first` and `escalate-to` are among them)."""
        self.models = models

    def inputs(self, call: Call) -> Json:
        """What the rules decide from, as recorded in the decision log (words as hashes, not the prompt)."""
        words = rules.word_hashes(wire.last_human_text(call.request.messages))
        evidence = rules.turn_evidence(wire.tool_turns(call.request.messages), self.vm.repeat_limit,
                                       self.vm.hold_turns)
        return {"asked": bool(call.extras.get("validate")), "words": words,
                "evidence": list(evidence) if evidence else None}

    def _first_call(self, call: Call) -> tuple[Call, bool]:
        """The call for `first`, asking for logprobs in the shape every server answers (llama-cpp-python
        returns none without `top_logprobs`, also when the client sent `logprobs: true` alone); and whether
        the client asked for logprobs itself."""
        wanted = bool(call.request.logprobs)
        asked = {"logprobs": True, "top_logprobs": max(call.request.top_logprobs or 0, 1)}
        first = dataclasses.replace(call, request=msgspec.structs.replace(call.request, **asked), stream=False,
                                    extras=nested(call))
        return first, wanted

    async def _second(self, call: Call, members: Members) -> str | None:
        """The second opinion's text: asked through the one member path (role `second-opinion`), so its
        budget, breaker, cost and usage count like any member's."""
        name = self.vm.second_opinion
        if name is None:
            return None
        try:
            reply = await members.ask(name, call.request, role="second-opinion", lone=True)
        except MemberFailure:
            return None
        return reply.answer.text

    async def _agreed(self, call: Call) -> tuple[Result, float | None, str]:
        """`confidence = "agreement"`: `first` as the client asked, and one sample of it, at once; the
        sample's members are reported with role `agreement` (their cost counts)."""
        plain = dataclasses.replace(call, stream=False, extras=nested(call))
        seed = (call.request.seed or 0) + 1
        sample = dataclasses.replace(plain, request=msgspec.structs.replace(
            call.request, temperature=self.vm.agreement_temperature, seed=seed), extras=nested(call))
        model = self.models[self.vm.first]
        tasks = [asyncio.ensure_future(model.complete(plain)), asyncio.ensure_future(model.complete(sample))]
        try:
            await asyncio.wait(tasks)
        except BaseException:
            await stop(set(tasks))
            raise
        out = tasks[0].result()  # the client's answer; its failure is the cascade's, as with one call
        if tasks[1].exception() is not None:
            return out, None, "none: the agreement sample failed"
        other = tasks[1].result()
        out.report.members += [msgspec.structs.replace(m, role="agreement") for m in other.report.members]
        out.report.totalled()
        question = wire.last_user_text(call.request.messages)
        return out, agreement_of(out.reply.answer.text or "", other.reply.answer.text or "", question), "agreement"

    async def _first(self, call: Call) -> tuple[Result, float | None, str]:
        """The first answer, its confidence and where the confidence came from."""
        if self.vm.confidence == "agreement":
            return await self._agreed(call)
        first_call, wanted = self._first_call(call)
        members = Members(self.backends, call.budget)
        second = asyncio.create_task(self._second(call, members)) if self.vm.second_opinion else None
        try:
            out = await self.models[self.vm.first].complete(first_call)
        except BaseException:
            if second is not None:
                await stop({second})
            raise
        answer = out.reply.answer
        confidence = rules.logprob_confidence(answer.logprobs)
        source = "logprobs"
        if confidence is not None and second is not None:
            await stop({second})
            members.stopped(self.vm.second_opinion or "", "cancelled", "not needed: the first answer had logprobs")
        elif second is not None:
            other = await second
            confidence, source = (agreement_of(answer.text or "", other, wire.last_user_text(call.request.messages)),
                                  "second-opinion") if other else \
                (None, "none")
        if confidence is None and source == "logprobs":
            source = ("none: the first answer came without token logprobs and no second-opinion is "
                      "configured" if second is None else "none: no logprobs, and the second opinion failed")
        for c in out.reply.choices:  # the client gets the logprobs it asked for, in the shape it asked for
            c.logprobs = None if not wanted else c.logprobs if call.request.top_logprobs else _no_top(c.logprobs)
        out.report.members += members.reports  # asked beside the first model: its cost and usage count too
        out.report.totalled()
        return out, confidence, source

    def _meta(self, inner: CouncilReport, latency_ms: int, first: CouncilReport | None = None,
              blocked: str | None = None, **fields: Any) -> CouncilReport:
        """The answering model's report under the cascade's name, with the rule that fired; when the first
        answer was overruled its report is kept (`first`) and its members are counted too."""
        members = inner.members if first is None else \
            [msgspec.structs.replace(m, role=m.role or "first") for m in first.members] + inner.members
        return msgspec.structs.replace(
            inner, virtual_model=self.name, strategy=self.label, answered_by=inner.virtual_model, members=members,
            first=first, escalated=bool(fields.pop("escalated", False)), escalation_skipped=blocked,
            latency_ms=latency_ms, **fields).totalled()

    def _reach(self, call: Call) -> tuple[tuple[str, str] | None, str | None]:
        """The escalation decided before the first model (a rule, or `first` being outside the caller's
        tier), and why escalating is impossible when `escalate-to` is outside it."""
        inputs = self.inputs(call)
        before = rules.escalate_before(inputs["asked"], inputs["words"], self.vm.risk_words)
        if before is None and inputs["evidence"] and self.vm.escalate_on_evidence:
            before = tuple(inputs["evidence"])
        first_ok, escalate_ok = call.may(self.vm.first), call.may(self.vm.escalate_to)
        if not first_ok and not escalate_ok:
            raise NotAllowed(f"`{self.name}` answers with `{self.vm.first}` or `{self.vm.escalate_to}`, and the "
                             "key's tier allows neither.", param="model")
        if not first_ok:
            return ("first-not-allowed", f"`{self.vm.first}` is outside the key's tier"), None
        if not escalate_ok:
            blocked = f"`{self.vm.escalate_to}` is outside the key's tier"
            return None, (f"{before[0]} ({before[1]}), but {blocked}" if before else blocked)
        return before, None

    def _after(self, confidence: float | None, blocked: str | None) -> tuple[tuple[str, str] | None, str | None]:
        """The escalation the first answer's confidence calls for, unless escalating is not allowed (then
        the reason it would have escalated joins `blocked`)."""
        after = rules.escalate_after(confidence, self.vm.min_confidence)
        if after is not None and blocked is not None:
            return None, f"{after[0]} ({after[1]}), but {blocked}"
        return after, blocked

    async def complete(self, call: Call) -> Result:
        timer = Timer()
        before, blocked = self._reach(call)
        if before is not None:
            out = await self.models[self.vm.escalate_to].complete(inner_call(call))
            out.report = self._meta(out.report, timer.ms(), escalated=True, escalated_because=before[0],
                                    why=before[1])
            return out
        first, confidence, source = await self._first(call)
        after, blocked = self._after(confidence, blocked)
        if after is None:
            first.report = self._meta(first.report, timer.ms(), blocked=blocked, confidence=confidence,
                                      confidence_source=source)
            return first
        out = await self.models[self.vm.escalate_to].complete(inner_call(call))
        out.report = self._meta(out.report, timer.ms(), first=first.report, escalated=True,
                                escalated_because=after[0], why=after[1], confidence=confidence,
                                confidence_source=source)
        return out

    async def _relay(self, inner: AsyncIterator[Event], timer: Timer, first: CouncilReport | None = None,
                     blocked: str | None = None, **fields: Any) -> AsyncIterator[Event]:
        """An inner model's stream with the cascade's metadata on its report."""
        async with aclosing(inner) as events:  # type: ignore[type-var]
            async for e in events:
                if isinstance(e, Report):
                    e = Report(self._meta(e.report, timer.ms(), first, blocked, **fields))
                yield e

    async def stream(self, call: Call) -> AsyncIterator[Event]:
        timer = Timer()
        before, blocked = self._reach(call)
        if before is not None:
            upstream = self.models[self.vm.escalate_to].stream(inner_call(call))
            async for e in self._relay(upstream, timer, escalated=True, escalated_because=before[0], why=before[1]):
                yield e
            return
        if self.vm.min_confidence <= 0:
            upstream = self.models[self.vm.first].stream(inner_call(call))
            async for e in self._relay(upstream, timer, blocked=blocked,
                                       confidence_source="not needed: min-confidence is 0"):
                yield e
            return
        task = asyncio.create_task(self._first(call))
        async with aclosing(waiting(task, self.vm.heartbeat_s)) as progress:
            async for e in progress:
                yield e
        first, confidence, source = task.result()
        after, blocked = self._after(confidence, blocked)
        if after is None:
            for r in replay_result(first):
                if isinstance(r, Report):
                    r = Report(self._meta(r.report, timer.ms(), blocked=blocked, confidence=confidence,
                                          confidence_source=source))
                yield r
            return
        upstream = self.models[self.vm.escalate_to].stream(inner_call(call))
        async for e in self._relay(upstream, timer, first.report, escalated=True, escalated_because=after[0],
                                   why=after[1], confidence=confidence, confidence_source=source):
            yield e
