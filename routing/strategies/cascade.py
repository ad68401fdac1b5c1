"""`cascade`: one fast virtual model answers; another takes over when it matters.

Escalation rules (pure, in `routing.rules`), in order:
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
import copy
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from routing import rules, wire
from routing.config import CascadeModel, Config
from routing.errors import MemberFailure, NotAllowed
from routing.fanout import stop
from routing.report import Timer, failed, total_usage
from routing.strategies.base import NESTED, Backends, Call, Json, Strategy
from routing.strategies.single import Single
from routing.vote import canonical, similarity


def nested(call: Call) -> dict[str, Any]:
    """Extras for a call the cascade makes on the client's behalf: its own decision record is the cascade's."""
    return {**call.extras, NESTED: True}


def inner_call(call: Call) -> Call:
    return dataclasses.replace(call, extras=nested(call))


def agreement_of(a: str, b: str) -> float:
    return 1.0 if canonical(a) == canonical(b) else round(similarity(a, b), 4)


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
        return {"asked": bool(call.extras.get("validate")), "words": rules.word_hashes(wire.last_user_text(call.body))}

    def _first_call(self, call: Call) -> tuple[Call, bool]:
        """The call for `first`, asking for logprobs unless the client did; and whether the client did."""
        wanted = bool(call.body.get("logprobs"))
        asked = {"logprobs": True} if wanted else {"logprobs": True, "top_logprobs": 1}  # llama-cpp-python: both
        first = dataclasses.replace(call, body={**call.body, **asked}, stream=False, extras=nested(call))
        return first, wanted

    async def _second(self, call: Call) -> tuple[str | None, list[Json]]:
        """The second opinion's text, and its member reports (role `second-opinion`): asked through the same
        member path as any member, so its budget, breaker, cost and usage count like theirs."""
        name = self.vm.second_opinion
        if name is None:
            return None, []
        sub = dataclasses.replace(call, body={k: v for k, v in call.body.items() if k not in ("stream",
                                                                                                "stream_options")},
                                  stream=False, extras=nested(call))
        t = Timer()
        try:
            resp = await Single(self.name, [name], self.backends, label="second-opinion").complete(sub)
        except MemberFailure as e:
            return None, [{**msgspec.to_builtins(failed(name, self.backends[name].model, e, t)),
                           "role": "second-opinion"}]
        members = [{**m, "role": "second-opinion"} for m in resp["council"].get("members") or ()]
        msg = (resp.get("choices") or [{}])[0].get("message") or {}
        return (msg.get("content") if isinstance(msg.get("content"), str) else None), members

    async def _first(self, call: Call) -> tuple[Json, float | None, str]:
        """The first answer, its confidence and where the confidence came from."""
        first_call, wanted = self._first_call(call)
        second = asyncio.create_task(self._second(call)) if self.vm.second_opinion else None
        try:
            out = await self.models[self.vm.first].complete(first_call)
        except BaseException:
            if second is not None:
                await stop({second})
            raise
        choice = (out.get("choices") or [{}])[0]
        confidence = rules.logprob_confidence(choice.get("logprobs"))
        source = "logprobs"
        if confidence is not None and second is not None:
            await stop({second})
            name = self.vm.second_opinion or ""
            _add_members(out, [{"name": name, "model": self.backends[name].model, "status": "cancelled",
                                "latency_ms": 0, "error": "not needed: the first answer had logprobs",
                                "role": "second-opinion"}])
        elif second is not None:
            other, members = await second
            _add_members(out, members)
            text = (choice.get("message") or {}).get("content") or ""
            confidence, source = (agreement_of(text, other), "second-opinion") if other else (None, "none")
        if confidence is None and source == "logprobs":
            source = ("none: the first answer came without token logprobs and no second-opinion is "
                      "configured" if second is None else "none: no logprobs, and the second opinion failed")
        if not wanted:
            for c in out.get("choices") or []:
                c["logprobs"] = None
        return out, confidence, source

    def _meta(self, council: Json | None, **fields: Any) -> Json:
        """The answering model's metadata under the cascade's name, with the rule that fired; when the
        first answer was overruled its metadata is kept (`first`) and its members are counted too."""
        inner = dict(council or {})
        first = fields.get("first") or {}
        out: Json = {"virtual_model": self.name, "strategy": self.label, "answered_by": inner.get("virtual_model"),
                     **{k: v for k, v in inner.items() if k not in ("virtual_model", "strategy")}, **fields}
        out["escalated"] = bool(fields.get("escalated"))
        if first:
            out["members"] = [{**m, "role": m.get("role") or "first"} for m in first.get("members") or []] + \
                list(inner.get("members") or [])
        out["cost_usd"] = round((inner.get("cost_usd") or 0.0) + (first.get("cost_usd") or 0.0), 8)
        out["usage"] = total_usage([inner.get("usage"), first.get("usage")])
        if out["usage"] is None:
            del out["usage"]
        return out

    def _reach(self, call: Call) -> tuple[tuple[str, str] | None, str | None]:
        """The escalation decided before the first model (a rule, or `first` being outside the caller's
        tier), and why escalating is impossible when `escalate-to` is outside it."""
        inputs = self.inputs(call)
        before = rules.escalate_before(inputs["asked"], inputs["words"], self.vm.risk_words)
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

    async def complete(self, call: Call) -> Json:
        timer = Timer()
        before, blocked = self._reach(call)
        if before is not None:
            out = await self.models[self.vm.escalate_to].complete(inner_call(call))
            out["council"] = self._meta(out.get("council"), escalated=True, escalated_because=before[0],
                                        why=before[1], confidence=None, latency_ms=timer.ms())
            return out
        first, confidence, source = await self._first(call)
        after, blocked = self._after(confidence, blocked)
        if after is None:
            first["council"] = self._meta(first.get("council"), confidence=confidence, confidence_source=source,
                                          latency_ms=timer.ms(), **_skipped(blocked))
            return first
        out = await self.models[self.vm.escalate_to].complete(inner_call(call))
        out["council"] = self._meta(out.get("council"), escalated=True, escalated_because=after[0], why=after[1],
                                    confidence=confidence, confidence_source=source, first=first.get("council"),
                                    latency_ms=timer.ms())
        return out

    async def _relay(self, inner: AsyncIterator[Json], skip_role: bool, **meta: Any) -> AsyncIterator[Json]:
        """An inner model's stream with the cascade's metadata on its council chunk."""
        async for chunk in inner:
            if "council" in chunk:
                chunk = {**chunk, "council": self._meta(chunk["council"], **meta)}
            elif skip_role and chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("role") and \
                    not any(v for k, v in chunk["choices"][0]["delta"].items() if k != "role"):
                continue
            yield chunk

    async def stream(self, call: Call) -> AsyncIterator[Json]:
        timer = Timer()
        before, blocked = self._reach(call)
        if before is not None:
            upstream = self.models[self.vm.escalate_to].stream(inner_call(call))
            async for chunk in self._relay(upstream, False, escalated=True, escalated_because=before[0],
                                           why=before[1], confidence=None):
                yield chunk
            return
        if self.vm.min_confidence <= 0:
            upstream = self.models[self.vm.first].stream(inner_call(call))
            async for chunk in self._relay(upstream, False, confidence=None,
                                           confidence_source="not needed: min-confidence is 0", **_skipped(blocked)):
                yield chunk
            return
        shaper = wire.ChunkShaper(id=call.id, created=call.created, model=call.model)
        yield shaper.role()
        task = asyncio.create_task(self._first(call))
        try:
            while not (await asyncio.wait({task}, timeout=self.vm.heartbeat_s))[0]:
                yield shaper.heartbeat()
        finally:
            await stop({task})
        first, confidence, source = task.result()
        after, blocked = self._after(confidence, blocked)
        if after is None:
            choice = first["choices"][0]
            for chunk in wire.answer_chunks(shaper, choice.get("message") or {}, choice.get("finish_reason") or "stop"):
                yield chunk
            if call.include_usage and first.get("usage"):
                yield shaper.usage_chunk(first["usage"])
            yield shaper.extension_chunk("council", self._meta(first.get("council"), confidence=confidence,
                                                               confidence_source=source, latency_ms=timer.ms(),
                                                               **_skipped(blocked)))
            return
        upstream = self.models[self.vm.escalate_to].stream(inner_call(call))
        async for chunk in self._relay(upstream, True, escalated=True,
                                       escalated_because=after[0], why=after[1], confidence=confidence,
                                       confidence_source=source, first=copy.deepcopy(first.get("council"))):
            yield chunk


def _add_members(out: Json, members: list[Json]) -> None:
    """Members asked beside the first model (the second opinion) join its report, cost and usage."""
    council = out.setdefault("council", {})
    council["members"] = [*(council.get("members") or []), *members]
    council["cost_usd"] = round((council.get("cost_usd") or 0.0) + sum(m.get("cost_usd") or 0.0 for m in members), 8)
    usage = total_usage([council.get("usage"), *(m.get("usage") for m in members)])
    if usage is not None:
        council["usage"] = usage


def _skipped(blocked: str | None) -> Json:
    """`escalation_skipped` in the metadata when escalating was wanted (or possible) but not allowed."""
    return {"escalation_skipped": blocked} if blocked else {}
