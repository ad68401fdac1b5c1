"""The contract of a thinking strategy, and the one way its members are asked.

A thinking strategy is `async def think(asker, messages, lead, partners, opts) -> Thought`:
it may ask `lead` and `partners` anything, through `asker`, which applies the request's
settings and budget and records every call (who, in which role, how long, what it used)
so that the metadata shows all of them. A failure of the lead's first answer propagates;
what a partner's failure costs is up to each strategy, which says so in `Thought.note`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from routing import wire
from routing.core import MemberReport
from routing.decide.budget import Budget
from routing.errors import AllMembersFailed, MemberFailure
from routing.fanout import fan_out, ordered
from routing.member import Members
from routing.request import Message, Request
from routing.upstream.backends import Backend
from routing.vote.vote import Ballot, agreement, cluster, ranked

Messages = list[Message]


@dataclass
class Asker:
    """Asks members on behalf of one request, through the one member path (`routing.member`), whose
    reports keep every call."""

    members: Members
    template: Request
    """The client's request as a member's inner call carries it: asked for text, once (`Request.plain`)."""
    progress: Callable[[str], None] = lambda line: None
    """Called with a line of progress (streamed as reasoning)."""

    @classmethod
    def for_request(cls, backends: Mapping[str, Backend], budget: Budget, req: Request) -> Asker:
        return cls(Members(backends, budget), req.plain([]))

    @property
    def backends(self) -> Mapping[str, Backend]:
        return self.members.backends

    @property
    def budget(self) -> Budget:
        return self.members.budget

    @property
    def reports(self) -> list[MemberReport]:
        return self.members.reports

    async def ask(self, member: str, messages: Messages, role: str, **overrides: Any) -> str:
        """The member's text answer; raises MemberFailure (recorded) when it cannot give one."""
        req = msgspec.structs.replace(self.template, messages=messages, **overrides)
        reply = await self.members.ask(member, req, role=role,
                                       need=lambda a: bool((a.text or "").strip()))
        return reply.answer.text or ""

    async def poll(self, asks: Mapping[str, Callable[[], Coroutine[Any, Any, str]]],
                   timeout_s: float) -> dict[str, str]:
        """Several asks at once; the answers of those that answered, in the given order."""
        result = await fan_out(asks, timeout_s)
        return {o.member: o.result for o in ordered(result.outcomes, list(asks)) if o.result is not None}

    def deadline(self, members: list[str]) -> float:
        """Long enough for the slowest member's own timeout: they bound themselves."""
        return max(self.backends[m].cfg.timeout_s for m in members) + 5.0


@dataclass
class Options:
    rounds: int = 2
    weights: Mapping[str, float] = field(default_factory=dict)
    """Vote weights (trio-consensus); `vote` and `debate` count one member, one vote."""
    similarity: float = 0.8


@dataclass
class Thought:
    text: str
    by: str
    """The member whose answer this is."""
    decided_by: str
    agreement: float | None = None
    note: str | None = None


class Think(Protocol):
    async def __call__(self, asker: Asker, messages: Messages, lead: str, partners: list[str],
                       opts: Options) -> Thought: ...


def majority(answers: Mapping[str, str], weights: Mapping[str, float], similarity: float,
             messages: Messages | None = None) -> tuple[str, float]:
    """The member whose answer leads the (weighted) vote, and the agreement behind it (claims are read
    against the last user message of `messages`)."""
    ballots = [Ballot(m, weights.get(m, 1.0), i, text, (), position=i) for i, (m, text) in enumerate(answers.items())]
    clusters = cluster(ballots, similarity, wire.last_user_text(messages or []))
    return ranked(clusters)[0].representative.member, agreement(clusters)


def nobody(what: str, asker: Asker, members: list[str]) -> AllMembersFailed:
    failures = [MemberFailure(r.name, r.error or r.status) for r in asker.reports if r.name in members
                and r.status != "ok"]
    return AllMembersFailed(what, failures)


async def vote_of(asker: Asker, messages: Messages, members: list[str], weights: Mapping[str, float],
                  similarity: float, role: str, label: str) -> Thought:
    """Every member answers the same messages independently; the vote picks one answer."""
    asker.progress(f"{label} · asking {', '.join(members)}")
    answers = await asker.poll({m: functools.partial(asker.ask, m, messages, role) for m in members},
                               asker.deadline(members))
    if not answers:
        raise nobody(f"{label}: no member answered", asker, members)
    winner, agree = majority(answers, weights, similarity, messages)
    return Thought(answers[winner], winner, "vote", agree,
                   None if len(answers) == len(members) else f"{len(answers)} of {len(members)} members answered")
