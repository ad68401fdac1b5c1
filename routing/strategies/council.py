"""`council`: every member at once, merged by weighted vote (or a chairman), decided early when it can be.

The async code here only gathers answers and applies the pure rules of `routing.vote.vote`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import msgspec

from routing import wire
from routing.config import Config
from routing.core import (
    Answer,
    ClusterReport,
    CouncilReport,
    Event,
    Reply,
    Report,
    Result,
    SamplingWave,
    UsageEvent,
    replay,
)
from routing.decide import rules
from routing.errors import AllMembersFailed, MemberFailure, MemberTimeout
from routing.fanout import FanOut, Outcome, fan_out, ordered
from routing.member import Members
from routing.models import CouncilModel
from routing.report import Timer
from routing.request import Request
from routing.strategies.base import Backends, Call, waiting
from routing.tokens import ZERO, Usage
from routing.vote import claims
from routing.vote.samples import samples
from routing.vote.synthesis import chairman_messages, judge_agreeing, judge_messages, judge_pick
from routing.vote.vote import (
    TIE_BREAKS,
    Ballot,
    Cluster,
    Tally,
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
    answers: dict[str, Reply]
    members: Members
    decided_by: str
    note: str | None = None
    judged: bool = False
    """The clusters are the judge's grouping (its pick's group first): agreement is that group's share."""
    sampling: tuple[str, list[SamplingWave]] | None = None
    """An adaptive council: why it stopped, and the vote after each wave (the last says how many it asked)."""

    @property
    def answer_usage(self) -> Usage | None:
        """The usage of the answer the client gets: the winning member's call."""
        return self.members.usage_of(self.winner.member)


def _regrouped(clusters: list[Cluster], judged: list[Ballot]) -> list[Cluster]:
    """The judge's group first (under the key of its pick's cluster), then what is left of the others."""
    taken = {id(b) for b in judged}
    home = next((c.key for c in clusters if any(id(b) == id(judged[0]) for b in c.ballots)), "judged")
    rest = [Cluster(c.key, [b for b in c.ballots if id(b) not in taken]) for c in clusters]
    return [Cluster(home, list(judged)), *(c for c in rest if c.ballots)]


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
        self.place = {n: i for i, n in enumerate(self.names)}
        """Each member's place in the configured order (the vote's last word in a tie)."""
        self.asked_logprobs = frozenset(self.names if vm.tie_break == "logprob" else
                                        self.names[:1] if vm.confident_first is not None else ())
        """The samples asked for logprobs whatever the client asked: all for the tie-break, the first for
        `confident-first` (the client gets them only if it asked)."""
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

    def _request(self, req: Request, sample: str) -> Request:
        """A member's own request: one of several samples of a backend gets its own seed (and the
        model's `sample-temperature` unless the client set one); logprobs when ties are broken by them, or
        for the first member's confidence (`confident-first`)."""
        changes: dict[str, Any] = {}
        if sample in self.sampled:
            n, temperature = self.sampled[sample]
            changes["seed"] = (req.seed or 0) + n
            if req.temperature is None and temperature is not None:
                changes["temperature"] = temperature
        if sample in self.asked_logprobs and not req.logprobs:
            changes |= {"logprobs": True, "top_logprobs": 1}  # llama-cpp-python needs both
        return msgspec.structs.replace(req, **changes) if changes else req

    @classmethod
    def from_config(cls, name: str, vm: CouncilModel, backends: Backends, cfg: Config | None = None) -> Council:
        return cls(name, vm, backends)

    @property
    def sample_weights(self) -> list[float]:
        """Every member's weight, in the order an adaptive council asks them (for the decision record)."""
        return [self.weights[s] for s in self.names]

    @property
    def _late(self) -> str:
        return f"no answer within the council's {self.vm.timeout_s:g}s"

    def _ballot(self, o: Outcome[Reply], order: int) -> Ballot:
        a = o.result.answer if o.result is not None else Answer()
        return Ballot(o.member, self.weights[o.member], order, a.text or "", tuple(a.tool_calls),
                      None if a.logprobs is None else rules.logprob_confidence(a.logprobs), self.place.get(o.member))

    def _tallied(self, tally: Tally, outcomes: dict[str, Outcome[Reply]]) -> Tally:
        """The tally with the answers it has not read yet. `fan_out` (and `_adaptively`, wave after wave) adds
        outcomes in their order of arrival, so the ones after those read are the new ones, in order."""
        if len(outcomes) > tally.seen:
            for o in list(outcomes.values())[tally.seen:]:
                if o.result is not None:
                    tally.add(self._ballot(o, len(tally.ballots)))
            tally.seen = len(outcomes)
        return tally

    def _enough(self, tally: Tally, outcomes: dict[str, Outcome[Reply]], pending: set[str]) -> bool:
        if not self.vm.early_decision or self.vm.similarity_backend:
            return False  # with a similarity backend, clusters are known only once the answers are embedded
        if len(self._tallied(tally, outcomes).ballots) < self.vm.min_answers:
            return False
        return decided(tally.clusters, sum(self.weights[m] for m in pending))

    async def _adaptively(self, calls: dict[str, Callable[[], Coroutine[Any, Any, Reply]]], tally: Tally
                          ) -> tuple[FanOut[Reply], str, list[SamplingWave]]:
        """`samples = "adaptive"`: a first wave, then waves of as many members as `rules.sample_more` asks,
        within the council's one deadline; the combined outcomes, and why it stopped asking. With
        `confident-first` the first member is asked alone, and `rules.first_alone` says whether its answer
        stands or the rest of the first wave is asked."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.vm.timeout_s
        combined: FanOut[Reply] = FanOut()
        alone = self.vm.confident_first
        wave, why = self.names[:self.vm.first_asked], ""
        waves: list[SamplingWave] = []
        while wave:
            run = await fan_out({s: calls[s] for s in wave}, max(0.0, deadline - loop.time()))
            for name, o in run.outcomes.items():
                o.arrival += len(combined.outcomes)
                combined.outcomes[name] = o
            combined.deadline_hit = combined.deadline_hit or run.deadline_hit
            unasked = [s for s in self.names if s not in combined.outcomes]
            ballots = self._tallied(tally, combined.outcomes).ballots
            clusters = ranked(tally.clusters)
            weights = [round(c.weight, 4) for c in clusters]
            if alone is not None and not waves:  # the first member, asked alone
                first = ballots[0].logprob if ballots else None
                waves.append(SamplingWave(len(combined.outcomes), weights, first))
                more, why = rules.first_alone(first, alone, self.vm.first_wave - 1)
            else:
                waves.append(SamplingWave(len(combined.outcomes), weights))
                more, why = rules.sample_more(weights, [self.weights[s] for s in unasked], self.vm.adaptive_confidence)
            if run.deadline_hit:
                more, why = 0, self._late
            wave = unasked[:more]
        return combined, why, waves

    async def deliberate(self, call: Call) -> Verdict:
        members = Members(self.backends, call.budget)
        calls = {s: functools.partial(members.ask, self.backend_of[s], self._request(call.request, s), shown=s,
                                      weight=self.weights[s], need=Answer.says_something) for s in self.names}
        question = wire.last_user_text(call.request.messages)
        asked = claims.Question.of(question) if question else claims.NO_QUESTION
        stopped_sampling: str | None = None
        waves: list[SamplingWave] = []
        tally = Tally(self.vm.similarity, asked)  # the vote as answers arrive, each answer's canonical form read once
        if self.vm.samples == "adaptive":
            run, stopped_sampling, waves = await self._adaptively(calls, tally)  # type: ignore[arg-type]
        else:
            run = await fan_out(calls, self.vm.timeout_s, functools.partial(self._enough, tally))
        ballots = self._tallied(tally, run.outcomes).ballots
        confident = (stopped_sampling or "").startswith(rules.CONFIDENT)  # `confident-first`: one answer is enough
        if len(ballots) < (1 if confident else self.vm.min_answers):
            raise self._failure(run, len(ballots))
        close, note = await self._closeness(call, members, ballots)
        clusters = tally.clusters if close is None else cluster(ballots, self.vm.similarity, asked, close, tally.keys)
        rule = self.vm.tie_break if self.vm.tie_break in TIE_BREAKS else "weight"
        order = ranked(clusters, rule)
        winner = order[0].representative
        how = tied(clusters, rule)
        decided_by = "early" if run.stopped_early else "confident-first" if confident else \
            "vote" if how is None else f"tie-break: {how}"
        for o in run.outcomes.values():
            if o.stopped is not None:
                members.stopped(o.member, o.stopped, "not needed: the vote was already decided"
                                if o.stopped == "cancelled" else self._late)
        cluster_of = {b.member: i for i, c in enumerate(clusters) for b in c.ballots}
        for r in members.reports:
            if r.name in cluster_of and r.status == "ok":
                r.cluster = cluster_of[r.name]
        place = self.place
        members.reports.sort(key=lambda r: (r.status == "skipped", place.get(r.name, len(place))))
        answers = {o.member: o.result for o in run.outcomes.values() if o.result is not None}
        if self.asked_logprobs and not call.request.logprobs:
            for a in answers.values():  # asked for the tie-break or the first's confidence, not by the client
                for c in a.choices:
                    c.logprobs = None
        v = Verdict(clusters, winner, answers, members, decided_by, note)
        if stopped_sampling is not None:
            v.sampling = (stopped_sampling, waves)
        if self.vm.merge == "judge" and not winner.tool_calls and len(ballots) > 1:
            await self._judge(call, v, ballots)
        elif how is not None and self.vm.tie_break in ("judge", "chairman") and not winner.tool_calls:
            level = order[0].rank()[:2]
            rivals = [c.representative for c in order if c.rank()[:2] == level]
            who = self.vm.chairman if self.vm.tie_break == "chairman" else None
            await self._judge(call, v, rivals, who, f"tie-break: {self.vm.tie_break}")
        return v

    async def _closeness(self, call: Call, members: Members, ballots: list[Ballot]) -> tuple[
            Callable[[Ballot, Ballot], bool] | None, str | None]:
        """With `similarity-backend`: every text answer embedded in one call (a member call like any other:
        budget, guard, report with role `similarity`), and the test that two answers' embeddings are close.
        When it fails, the answers are clustered by their words and the note says so."""
        name = self.vm.similarity_backend
        texts = [b for b in ballots if not b.tool_calls]
        if name is None or len(texts) < 2:
            return None, None
        try:
            data = await members.embed(name, [b.text for b in texts], self.vm.similarity_model, role="similarity")
            vectors = {b.member: v for b, v in zip(texts, data, strict=True)}
        except MemberFailure as e:
            return None, f"similarity backend {name!r}: {e.reason}; answers were clustered by their words"
        floor = self.vm.embedding_similarity

        def close(a: Ballot, b: Ballot) -> bool:
            va, vb = vectors.get(a.member), vectors.get(b.member)
            return va is not None and vb is not None and cosine(va, vb) >= floor

        return close, None

    async def _judge(self, call: Call, v: Verdict, ballots: list[Ballot], who: str | None = None,
                     decided_by: str = "judge") -> None:
        """Universal Self-Consistency: the judge (`who`, else the judge, the chairman or the first member) sees
        the answers, numbered and anonymized, and names the most consistent; that answer wins. Asked through
        the one member path (budget, guard, report); when it fails or names none, the vote's winner stands and
        the note says so. A tie-break shows it only the tied answers."""
        judge = who or self.vm.judge or self.vm.chairman or self.backend_of[self.names[0]]
        messages = judge_messages(call.request.messages, [b.text for b in ballots])
        req = msgspec.structs.replace(call.request.plain(messages), temperature=0)
        try:
            reply = await v.members.ask(judge, req, role="judge", lone=True)
        except MemberFailure as e:
            v.note = f"judge {judge!r} failed ({e.reason}); the vote decided"
            return
        said = reply.answer.text or ""
        pick = judge_pick(said, len(ballots))
        if pick is None:
            v.note = f"judge {judge!r} named no response ({said[:80]!r}); the vote decided"
            return
        v.winner, v.decided_by = ballots[pick], decided_by
        agreeing = judge_agreeing(said, len(ballots), pick) if decided_by == "judge" else None
        if agreeing is not None:  # merge = "judge": its grouping is the vote's, and agreement its judged share
            v.clusters = _regrouped(v.clusters, [ballots[i] for i in sorted({pick, *agreeing})])
            v.judged = True
            where = {b.member: i for i, c in enumerate(v.clusters) for b in c.ballots}
            for r in v.members.reports:
                if r.name in where and r.status == "ok":
                    r.cluster = where[r.name]

    def _failure(self, run: FanOut[Reply], answered: int) -> AllMembersFailed:
        failures: list[MemberFailure] = []
        for o in ordered(run.outcomes, self.names):
            if o.failure is not None:
                failures.append(o.failure)
            elif o.result is None:
                failures.append(MemberTimeout(o.member, self._late))
        what = (f"council {self.name!r} got {answered} answer(s) but needs {self.vm.min_answers} "
                f"(min-answers)")
        return AllMembersFailed(what, failures, deadline=run.deadline_hit)

    def _report(self, v: Verdict, timer: Timer, winner: str | None, decided_by: str, note: str | None
                ) -> CouncilReport:
        clusters = [
            ClusterReport(id=i, members=[b.member for b in c.ballots], weight=round(c.weight, 4),
                          preview=(c.representative.text or c.key)[:PREVIEW])
            for i, c in enumerate(v.clusters)
        ]
        members = v.members.reports
        total = sum(c.weight for c in v.clusters)
        share = round(v.clusters[0].weight / total, 4) if v.judged and total > 0 else agreement(v.clusters)
        stopped, waves = v.sampling or (None, None)
        return CouncilReport(
            virtual_model=self.name, strategy=self.label, winner=winner, members=members,
            degraded=any(m.status in ("error", "timeout", "skipped") for m in members),
            decided_by=decided_by, agreement=share,
            majority=v.clusters[0].weight * 2 > total if v.judged else has_majority(v.clusters),
            clusters=clusters, latency_ms=timer.ms(), note=note,
            samples_asked=waves[-1].asked if waves else None, sampling_stopped=stopped, sampling_waves=waves,
        ).totalled()

    def _chairman_request(self, call: Call, v: Verdict) -> Request:
        """The chairman answers the client in its stead: in the format and with the logprobs it asked for."""
        messages = chairman_messages(call.request.messages, v.clusters)
        return call.request.plain(messages, keep=("response_format", "logprobs", "top_logprobs"))

    def _wants_synthesis(self, v: Verdict) -> bool:
        """A chairman is asked unless the winner is a tool call; with the budget spent it is reported skipped."""
        chair = self.vm.chairman
        if self.vm.merge != "synthesize" or chair is None or v.winner.tool_calls:
            return False
        why = v.members.why_not(chair, lone=True)
        if why is None:
            return True
        v.members.skip(chair, why, role="chairman")
        return False

    def _chair_failed(self, e: MemberFailure) -> str:
        return f"chairman {self.vm.chairman!r} failed ({e.reason}); returned the vote winner"

    async def complete(self, call: Call) -> Result:
        timer = Timer()
        v = await self.deliberate(call)
        reply = v.answers[v.winner.member]
        winner, decided_by, note, usage = v.winner.member, v.decided_by, v.note, v.answer_usage
        if self._wants_synthesis(v):
            chair = self.vm.chairman or ""
            try:
                reply = await v.members.ask(chair, self._chairman_request(call, v), role="chairman", lone=True)
                winner, decided_by, usage = chair, "synthesis", reply.usage
            except MemberFailure as e:
                note = self._chair_failed(e)
        out = Reply([reply.answer], usage, reply.fingerprint)
        return Result(out, self._report(v, timer, winner, decided_by, note))

    async def stream(self, call: Call) -> AsyncIterator[Event]:
        timer = Timer()
        task = asyncio.create_task(self.deliberate(call))
        async with aclosing(waiting(task, self.vm.heartbeat_s)) as progress:
            async for e in progress:
                yield e
        v = task.result()
        winner, decided_by, note, usage = v.winner.member, v.decided_by, v.note, v.answer_usage
        synthesized = False
        if self._wants_synthesis(v):
            chair = self.vm.chairman or ""
            async with aclosing(v.members.stream(chair, self._chairman_request(call, v), role="chairman",
                                                 lone=True)) as events:
                try:
                    first = await anext(events)
                except MemberFailure as e:
                    note = self._chair_failed(e)
                else:
                    yield first
                    async for ev in events:
                        yield ev
                    usage = v.members.usage_of(chair)
                    winner, decided_by, synthesized = chair, "synthesis", True
        if not synthesized:
            for ev in replay(v.answers[v.winner.member].answer):
                yield ev
        yield UsageEvent(usage or ZERO)
        yield Report(self._report(v, timer, winner, decided_by, note))
