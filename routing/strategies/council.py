"""`council`: every member at once, merged by weighted vote (or a chairman), decided early when it can be.

The async code here only gathers answers and applies the pure rules of `routing.vote`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

import msgspec

from routing import rules, spend, wire
from routing.budget import EXHAUSTED, Skipped
from routing.config import Config, CouncilModel
from routing.errors import AllMembersFailed, MemberFailure, MemberTimeout
from routing.fanout import FanOut, Outcome, fan_out, ordered, stop
from routing.health import unusable
from routing.report import ClusterReport, CouncilReport, MemberReport, Timer, priced
from routing.samples import samples
from routing.strategies.base import Backends, Call, Json, relay
from routing.strategies.single import Single
from routing.synthesis import chairman_messages, judge_messages, judge_pick
from routing.vote import (
    TIE_BREAKS,
    Ballot,
    Cluster,
    agreement,
    cluster,
    cosine,
    decided,
    has_majority,
    ranked,
    tied,
)

PREVIEW = 80


@dataclass
class Verdict:
    clusters: list[Cluster]
    winner: Ballot
    answers: dict[str, Json]
    reports: list[MemberReport]
    decided_by: str
    note: str | None = None

    @property
    def answer_usage(self) -> Json | None:
        """The usage of the answer the client gets: the winning member's call."""
        return next((r.usage for r in self.reports if r.name == self.winner.member and r.status == "ok"), None)


def _message(resp: Json) -> Json:
    choices = resp.get("choices") or [{}]
    msg = choices[0].get("message") if isinstance(choices[0], dict) else None
    return msg if isinstance(msg, dict) else {}


class Council:
    label = "council"

    def __init__(self, name: str, vm: CouncilModel, backends: Backends) -> None:
        self.name = name
        self.vm = vm
        self.backends = backends
        self.samples = samples(vm.members)
        self.backend_of = dict(self.samples)
        """Each member's name in the metadata (`smol#2` for a second sample) -> its backend."""
        self.names = [s for s, _ in self.samples]
        self.weights = {s: vm.weights.get(s, vm.weights.get(b, backends[b].cfg.weight)) for s, b in self.samples}
        self.sampled: dict[str, tuple[int, float | None]] = {}
        """Each sample's seed offset and its temperature (None: the client's, or the server's default)."""
        for s, b in self.samples:
            if s == b:
                continue
            n = int(s.rpartition("#")[2])
            greedy = vm.greedy_first and n == 1
            self.sampled[s] = (n, 0.0 if greedy else vm.sample_temperature)
            if greedy and s not in vm.weights:
                self.weights[s] = vm.greedy_weight

    def _body(self, body: Json, sample: str) -> Json:
        """A member's own request: one of several samples of a backend gets its own seed (and the
        model's `sample-temperature` unless the client set one); logprobs when ties are broken by them."""
        out = body
        if sample in self.sampled:
            n, temperature = self.sampled[sample]
            seed = body.get("seed")
            out = {**body, "seed": (seed if isinstance(seed, int) else 0) + n}
            if body.get("temperature") is None and temperature is not None:
                out["temperature"] = temperature
        if self.vm.tie_break == "logprob" and not body.get("logprobs"):
            out = {**out, "logprobs": True, "top_logprobs": 1}  # llama-cpp-python needs both
        return out

    @classmethod
    def from_config(cls, name: str, vm: CouncilModel, backends: Backends, cfg: Config | None = None) -> Council:
        return cls(name, vm, backends)

    @property
    def _late(self) -> str:
        return f"no answer within the council's {self.vm.timeout_s:g}s"

    def _chair_report(self, t: Timer, usage: Json | None = None, estimated: bool = False,
                      failure: MemberFailure | None = None) -> tuple[MemberReport, str | None]:
        """The chairman's line in the metadata, and the note to add when it failed."""
        chair = self.vm.chairman or ""
        status = failure.kind if failure else "ok"
        reason = failure.reason if failure else None
        report = MemberReport(name=chair, model=self.backends[chair].model, status=status,  # type: ignore[arg-type]
                              latency_ms=t.ms(), usage=usage, usage_estimated=estimated, error=reason,
                              role="chairman")
        note = f"chairman {chair!r} failed ({reason}); returned the vote winner" if failure else None
        return report, note

    async def _ask(self, member: str, body: Json) -> Json:
        resp = await self.backends[self.backend_of[member]].complete(body)
        msg = _message(resp)
        if not msg.get("content") and not msg.get("tool_calls"):
            raise MemberFailure(member, "empty answer")
        return resp

    def _ballots(self, outcomes: dict[str, Outcome[Json]]) -> list[Ballot]:
        arrived = sorted((o for o in outcomes.values() if o.result is not None), key=lambda o: o.arrival)
        out = []
        for i, o in enumerate(arrived):
            msg = _message(o.result or {})
            choice = ((o.result or {}).get("choices") or [{}])[0]
            out.append(Ballot(o.member, self.weights[o.member], i, msg.get("content") or "",
                              tuple(msg.get("tool_calls") or ()),
                              rules.logprob_confidence(choice.get("logprobs") if isinstance(choice, dict) else None)))
        return out

    def _enough(self, question: str, outcomes: dict[str, Outcome[Json]], pending: set[str]) -> bool:
        ballots = self._ballots(outcomes)
        if not self.vm.early_decision or self.vm.similarity_backend or len(ballots) < self.vm.min_answers:
            return False  # with a similarity backend, clusters are known only once the answers are embedded
        return decided(cluster(ballots, self.vm.similarity, question), sum(self.weights[m] for m in pending))

    async def deliberate(self, call: Call) -> Verdict:
        skipped = {s: EXHAUSTED for s, b in self.samples if not call.budget.allows(self.backends[b].cfg)}
        skipped |= {s: why for s, b in self.samples if s not in skipped and (why := unusable(self.backends[b]))}
        calls = {s: functools.partial(self._ask, s, self._body(call.body, s)) for s in self.names if s not in skipped}
        question = wire.last_user_text(call.body)
        run: FanOut[Json] = await fan_out(calls, self.vm.timeout_s, functools.partial(self._enough, question))
        ballots = self._ballots(run.outcomes)
        if len(ballots) < self.vm.min_answers:
            raise self._failure(run, len(ballots), skipped)
        close, embedded, note = await self._closeness(call, ballots)
        clusters = cluster(ballots, self.vm.similarity, question, close)
        rule = self.vm.tie_break if self.vm.tie_break in TIE_BREAKS else "weight"
        order = ranked(clusters, rule)
        winner = order[0].representative
        how = tied(clusters, rule)
        decided_by = "early" if run.stopped_early else "vote" if how is None else f"tie-break: {how}"
        cluster_of = {b.member: i for i, c in enumerate(clusters) for b in c.ballots}
        reports = []
        for o in ordered(run.outcomes, self.names):
            backend = self.backends[self.backend_of[o.member]]
            r = MemberReport(name=o.member, model=backend.model, status="ok", latency_ms=o.latency_ms,
                             weight=self.weights[o.member])
            if o.result is not None:
                r.usage = wire.usage_of(o.result["usage"]) if isinstance(o.result.get("usage"), dict) else None
                call.budget.charge(backend.cfg, r.usage)
                r.cluster = cluster_of[o.member]
            elif o.failure is not None:
                r.status, r.error = o.failure.kind, o.failure.reason  # type: ignore[assignment]
            else:
                r.status = o.stopped  # type: ignore[assignment]
                r.error = "not needed: the vote was already decided" if o.stopped == "cancelled" else self._late
            reports.append(r)
        reports += [MemberReport(name=m, model=self.backends[self.backend_of[m]].model, status="skipped",
                                 latency_ms=0, weight=self.weights[m], error=why) for m, why in skipped.items()]
        answers = {o.member: o.result for o in run.outcomes.values() if o.result is not None}
        if self.vm.tie_break == "logprob" and not call.body.get("logprobs"):
            for a in answers.values():  # asked for the tie-break, not by the client
                for c in a.get("choices") or ():
                    if isinstance(c, dict):
                        c["logprobs"] = None
        if embedded is not None:
            reports.append(embedded)
        v = Verdict(clusters, winner, answers, reports, decided_by, note)
        if self.vm.merge == "judge" and not winner.tool_calls and len(ballots) > 1:
            await self._judge(call, v, ballots)
        elif how is not None and self.vm.tie_break in ("judge", "chairman") and not winner.tool_calls:
            level = order[0].rank()[:2]
            rivals = [c.representative for c in order if c.rank()[:2] == level]
            who = self.vm.chairman if self.vm.tie_break == "chairman" else None
            await self._judge(call, v, rivals, who, f"tie-break: {self.vm.tie_break}")
        return v

    async def _closeness(self, call: Call, ballots: list[Ballot]) -> tuple[
            Callable[[Ballot, Ballot], bool] | None, MemberReport | None, str | None]:
        """With `similarity-backend`: every text answer embedded in one call (a member call like any other:
        budget, guard, report with role `similarity`), and the test that two answers' embeddings are close.
        When it fails, the answers are clustered by their words and the note says so."""
        name = self.vm.similarity_backend
        texts = [b for b in ballots if not b.tool_calls]
        if name is None or len(texts) < 2:
            return None, None, None
        backend = self.backends[name]
        model = self.vm.similarity_model or backend.model
        t = Timer()
        try:
            if not call.budget.allows(backend.cfg):
                raise Skipped(name, EXHAUSTED)
            with spend.tracked(name, model, backend.cfg) as spent:
                resp = await backend.forward("/embeddings", {"input": [b.text for b in texts]},
                                             self.vm.similarity_model)
                try:
                    raw = await resp.aread()
                finally:
                    await resp.aclose()
                data = msgspec.json.decode(raw)
                rows = sorted(data["data"], key=lambda d: d["index"])
                vectors = {b.member: [float(x) for x in d["embedding"]] for b, d in zip(texts, rows, strict=True)}
                spent.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        except (MemberFailure, msgspec.DecodeError, KeyError, TypeError, ValueError) as e:
            reason = e.reason if isinstance(e, MemberFailure) else f"malformed embeddings answer ({e})"
            status = e.kind if isinstance(e, MemberFailure) else "error"
            report = MemberReport(name=name, model=model, status=status, latency_ms=t.ms(),  # type: ignore[arg-type]
                                  error=reason, role="similarity")
            return None, report, f"similarity backend {name!r}: {reason}; answers were clustered by their words"
        call.budget.charge(backend.cfg, spent.usage)
        report = MemberReport(name=name, model=model, status="ok", latency_ms=t.ms(), usage=spent.usage,
                              role="similarity")
        floor = self.vm.embedding_similarity

        def close(a: Ballot, b: Ballot) -> bool:
            va, vb = vectors.get(a.member), vectors.get(b.member)
            return va is not None and vb is not None and cosine(va, vb) >= floor

        return close, report, None

    async def _judge(self, call: Call, v: Verdict, ballots: list[Ballot], who: str | None = None,
                     decided_by: str = "judge") -> None:
        """Universal Self-Consistency: the judge (`who`, else the judge, the chairman or the first member) sees
        the answers, numbered and anonymized, and names the most consistent; that answer wins. Asked through
        the one member path (budget, guard, report); when it fails or names none, the vote's winner stands and
        the note says so. A tie-break shows it only the tied answers."""
        judge = who or self.vm.judge or self.vm.chairman or self.backend_of[self.names[0]]
        body = {k: val for k, val in call.body.items() if k not in ("tools", "tool_choice", "functions", "n",
                                                                    "stream", "stream_options", "logprobs",
                                                                    "top_logprobs", "response_format")}
        body["messages"] = judge_messages(call.body.get("messages") or [], [b.text for b in ballots])
        body["temperature"] = 0
        t = Timer()
        try:
            out = await Single(self.name, [judge], self.backends, label="judge").complete(
                dataclasses.replace(call, body=body, stream=False))
        except MemberFailure as e:
            v.reports.append(MemberReport(name=judge, model=self.backends[judge].model, status=e.kind,  # type: ignore[arg-type]
                                          latency_ms=t.ms(), error=e.reason, role="judge"))
            v.note = f"judge {judge!r} failed ({e.reason}); the vote decided"
            return
        for m in out["council"].get("members") or ():
            v.reports.append(MemberReport(**{**m, "role": "judge"}))
        said = ((out.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        pick = judge_pick(said, len(ballots))
        if pick is None:
            v.note = f"judge {judge!r} named no response ({said[:80]!r}); the vote decided"
            return
        v.winner, v.decided_by = ballots[pick], decided_by

    def _failure(self, run: FanOut[Json], answered: int, skipped: dict[str, str]) -> AllMembersFailed:
        failures: list[MemberFailure] = []
        for o in ordered(run.outcomes, self.names):
            if o.failure is not None:
                failures.append(o.failure)
            elif o.result is None:
                failures.append(MemberTimeout(o.member, self._late))
        failures += [Skipped(m, why) for m, why in skipped.items()]
        what = (f"council {self.name!r} got {answered} answer(s) but needs {self.vm.min_answers} "
                f"(min-answers)")
        return AllMembersFailed(what, failures, deadline=run.deadline_hit)

    def _report(self, v: Verdict, timer: Timer, winner: str | None, decided_by: str, note: str | None,
                extra: list[MemberReport]) -> Json:
        clusters = [
            ClusterReport(id=i, members=[b.member for b in c.ballots], weight=round(c.weight, 4),
                          preview=(c.representative.text or c.key)[:PREVIEW])
            for i, c in enumerate(v.clusters)
        ]
        members = priced(v.reports + extra, self.backends)
        return CouncilReport(
            virtual_model=self.name, strategy=self.label, winner=winner, members=members,
            degraded=any(m.status in ("error", "timeout", "skipped") for m in members),
            decided_by=decided_by, agreement=agreement(v.clusters), majority=has_majority(v.clusters),
            clusters=clusters,
            latency_ms=timer.ms(), note=note,
        ).as_json()

    def _chairman_body(self, call: Call, v: Verdict) -> Json:
        body = {k: val for k, val in call.body.items() if k not in ("tools", "tool_choice", "functions", "n")}
        body["messages"] = chairman_messages(call.body.get("messages") or [], v.clusters)
        return body

    def _wants_synthesis(self, call: Call, v: Verdict, extra: list[MemberReport]) -> bool:
        if self.vm.merge != "synthesize" or self.vm.chairman is None or v.winner.tool_calls:
            return False
        chair = self.backends[self.vm.chairman]
        if call.budget.allows(chair.cfg):
            return True
        extra.append(MemberReport(name=self.vm.chairman, model=chair.model, status="skipped", latency_ms=0,
                                  error=EXHAUSTED, role="chairman"))
        return False

    async def complete(self, call: Call) -> Json:
        timer = Timer()
        v = await self.deliberate(call)
        resp = v.answers[v.winner.member]
        extra: list[MemberReport] = []
        winner, decided_by, note, usage = v.winner.member, v.decided_by, v.note, v.answer_usage
        if self._wants_synthesis(call, v, extra):
            chair = self.vm.chairman or ""
            t = Timer()
            try:
                resp = await self.backends[chair].complete(self._chairman_body(call, v))
                winner, decided_by = chair, "synthesis"
                chair_usage = resp.get("usage") if isinstance(resp.get("usage"), dict) else None
                call.budget.charge(self.backends[chair].cfg, chair_usage)
                usage = chair_usage
                report, _ = self._chair_report(t, chair_usage)
            except MemberFailure as e:
                report, note = self._chair_report(t, failure=e)
            extra.append(report)
        out = wire.completion(resp, id=call.id, created=call.created, model=call.model)
        if v.winner.tool_calls and decided_by != "synthesis":
            out["choices"][0]["finish_reason"] = "tool_calls"
        if usage:
            out["usage"] = usage
        out["council"] = self._report(v, timer, winner, decided_by, note, extra)
        return out

    async def stream(self, call: Call) -> AsyncIterator[Json]:
        timer = Timer()
        shaper = wire.ChunkShaper(id=call.id, created=call.created, model=call.model)
        yield shaper.role()
        task = asyncio.create_task(self.deliberate(call))
        try:
            while not (await asyncio.wait({task}, timeout=self.vm.heartbeat_s))[0]:
                yield shaper.heartbeat()
            v = task.result()
        finally:
            await stop({task})
        extra: list[MemberReport] = []
        winner, decided_by, note, usage = v.winner.member, v.decided_by, v.note, v.answer_usage
        synthesized = False
        if self._wants_synthesis(call, v, extra):
            chair = self.vm.chairman or ""
            t = Timer()
            upstream = self.backends[chair].stream(self._chairman_body(call, v))
            try:
                first = await anext(upstream)
            except (MemberFailure, StopAsyncIteration) as e:
                failure = e if isinstance(e, MemberFailure) else MemberFailure(chair, "empty stream")
                report, note = self._chair_report(t, failure=failure)
                extra.append(report)
            else:
                async with aclosing(relay(first, upstream, shaper)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                chair_usage, estimated = shaper.measured_usage(self._chairman_body(call, v))
                call.budget.charge(self.backends[chair].cfg, chair_usage)
                usage = chair_usage
                extra.append(self._chair_report(t, chair_usage, estimated)[0])
                winner, decided_by, synthesized = chair, "synthesis", True
        if not synthesized:
            answer = v.answers[v.winner.member]
            finish = (answer.get("choices") or [{}])[0].get("finish_reason") or "stop"
            for chunk in wire.answer_chunks(shaper, _message(answer), finish):
                yield chunk
        if call.include_usage:
            yield shaper.usage_chunk(usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        yield shaper.extension_chunk("council", self._report(v, timer, winner, decided_by, note, extra))
