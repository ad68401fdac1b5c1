"""The one way every strategy asks a member: skip -> guard -> budget -> call -> charge -> report.

A `Members` belongs to one strategy's run of one request. Each call it makes is checked against
the budget and the backend's health first (and reported `skipped` with the reason when it is not
asked), goes through the backend's guard (GPU slot, breaker), is kept in the request's spend list
(so a client that leaves still gets a ledger row), is charged to the budget, and ends as one
`MemberReport` with what that one call noticed: its own wait for the GPU, its own cold start,
its usage and cost. Three calls of one member are three reports with three waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import msgspec

from routing.core import Answer, Event, MemberReport, RawChunk, Reply, TextDelta, UsageEvent
from routing.decide import spend
from routing.decide.budget import EXHAUSTED, Budget, Skipped
from routing.decide.spend import Spend
from routing.errors import MemberFailure
from routing.report import cost
from routing.request import Request
from routing.tokens import Usage, estimate_tokens, usd
from routing.upstream.backends import Backend
from routing.upstream.guard import unusable
from routing.wire import prompt_text

GONE = "not needed any more"


class Members:
    def __init__(self, backends: Mapping[str, Backend], budget: Budget) -> None:
        self.backends = backends
        self.budget = budget
        self.reports: list[MemberReport] = []
        self._needed: tuple[Request, int, int] | None = None

    def why_not(self, name: str, lone: bool = False, req: Request | None = None) -> str | None:
        """Why `name` is not asked: the budget is spent (for a cloud member), its breaker is open or it is
        loading, or its context window cannot hold the request. A `lone` member (nothing to fall back to)
        is still tried unless the budget is spent: its own error says more than "skipped"."""
        backend = self.backends[name]
        if not self.budget.allows(backend.cfg):
            return EXHAUSTED
        if lone:
            return None
        window = getattr(backend, "window", None)
        if window is not None and req is not None:
            prompt, out = self._need(req)
            if prompt + out > window:
                return (f"skipped: context window {window} tokens < {prompt + out} needed "
                        f"(prompt ~{prompt} + max_tokens {out})")
        return unusable(backend)

    def _need(self, req: Request) -> tuple[int, int]:
        """The request's estimated prompt tokens and the tokens it may generate, worked out once per request."""
        if self._needed is None or self._needed[0] is not req:
            self._needed = (req, estimate_tokens(prompt_text(req.messages)), req.max_completion_tokens
                            or req.max_tokens or 0)
        return self._needed[1], self._needed[2]

    def skip(self, name: str, why: str, *, shown: str | None = None, role: str | None = None,
             weight: float | None = None) -> Skipped:
        """Report a member as not asked; the failure to raise or keep."""
        backend = self.backends[name]
        self.reports.append(MemberReport(name=shown or name, model=backend.model, status="skipped", latency_ms=0,
                                         error=why, role=role, weight=weight, cloud=backend.cfg.is_cloud))
        return Skipped(shown or name, why)

    def _begin(self, name: str, shown: str | None, role: str | None, model: str | None, weight: float | None,
               lone: bool, req: Request | None = None) -> MemberReport:
        why = self.why_not(name, lone, req)
        if why is not None:
            raise self.skip(name, why, shown=shown, role=role, weight=weight)
        backend = self.backends[name]
        report = MemberReport(name=shown or name, model=model or backend.model, status="ok", latency_ms=0,
                              role=role, weight=weight, cloud=backend.cfg.is_cloud)
        self.reports.append(report)
        return report

    def _end(self, name: str, report: MemberReport, spent: Spend, exc: BaseException | None) -> None:
        """The report from the call's own record: status, latency, usage and cost, the guard's notes."""
        cfg = self.backends[name].cfg
        report.latency_ms = spent.latency_ms
        if "queue_ms" in spent.notes:
            report.queue_ms = spent.notes["queue_ms"]
        if "endpoint" in spent.notes:
            report.endpoint = spent.notes["endpoint"]
        if isinstance(exc, MemberFailure):
            report.status, report.error = exc.kind, exc.reason  # type: ignore[assignment]
        elif exc is not None:
            report.status, report.error = "cancelled", GONE
        else:
            report.cold_start = bool(spent.notes.get("cold_start"))
        if spent.usage is not None:
            self.budget.charge(cfg, spent.usage)
            report.usage = spent.usage
            report.cost_usd = usd(cost(spent.usage, cfg))

    def _call(self, name: str, report: MemberReport, guarded: bool = True) -> _Call:
        """Around one call: kept in the request's spend list, inside the backend's guard (unless the call
        guards itself), and ended in its report, however it ends."""
        return _Call(self, name, report, guarded)

    async def ask(self, name: str, req: Request, *, shown: str | None = None, role: str | None = None,
                  model: str | None = None, weight: float | None = None, lone: bool = False,
                  need: Callable[[Answer], bool] | None = None) -> Reply:
        """The member's whole answer (`shown`: its name in the report, e.g. `smol#2` for a sample; `model`:
        the upstream model id to ask for instead of the backend's own; `need`: what an answer must have, or
        the member failed with "empty answer"). Raises MemberFailure, reported."""
        report = self._begin(name, shown, role, model, weight, lone, req)
        async with self._call(name, report) as spent:
            reply = await self.backends[name].complete(req, model, spent.notes)
            spent.usage = reply.usage
        if need is not None and not need(reply.answer):
            report.status, report.error = "error", "empty answer"
            raise MemberFailure(shown or name, "empty answer")
        return reply

    async def stream(self, name: str, req: Request, *, shown: str | None = None, role: str | None = None,
                     model: str | None = None, lone: bool = False, raw: bool = False) -> AsyncGenerator[Event, None]:
        """The member's answer as events, without the upstream's usage: the report gets that (or an
        estimate, marked `usage_estimated`, when the server sent none). The backend's GPU slot is held
        until the stream ends or is closed. `raw`: plain chunks come as `RawChunk`s (`Call.relay`)."""
        report = self._begin(name, shown, role, model, None, lone, req)
        said = 0
        async with self._call(name, report) as spent:
            async with contextlib.aclosing(self.backends[name].stream(req, model, spent.notes, raw)) as events:
                async for e in events:
                    if isinstance(e, UsageEvent):
                        spent.usage = e.usage
                        continue
                    if isinstance(e, RawChunk):
                        said += e.count
                    elif isinstance(e, TextDelta) and e.text:
                        said += e.count
                    yield e
            if spent.usage is None:
                p = estimate_tokens(prompt_text(req.messages))
                spent.usage = Usage(p, said, p + said)
                report.usage_estimated = True

    async def embed(self, name: str, texts: list[str], model: str | None = None, *, role: str | None = None
                    ) -> list[list[float]]:
        """The embeddings of `texts` from the backend's `/embeddings`, in order (a malformed answer is the
        member's failure, reported as any other). `forward` holds the backend's guard itself."""
        report = self._begin(name, None, role, model, None, True)
        async with self._call(name, report, guarded=False) as spent:
            resp = await self.backends[name].forward("/embeddings", {"input": texts}, model)
            try:
                raw = await resp.aread()
            finally:
                await resp.aclose()
            try:
                data = msgspec.json.decode(raw)
                vectors = [[float(x) for x in d["embedding"]] for d in sorted(data["data"], key=lambda d: d["index"])]
                if len(vectors) != len(texts):
                    raise ValueError(f"{len(vectors)} embeddings for {len(texts)} inputs")
            except (msgspec.DecodeError, KeyError, TypeError, ValueError) as e:
                raise MemberFailure(name, f"malformed embeddings answer ({e})") from e
            spent.usage = Usage.of(data.get("usage") if isinstance(data.get("usage"), dict) else None)
        return vectors

    def usage_of(self, shown: str) -> Usage | None:
        """The usage of `shown`'s last answered call: the answer the client gets, when it is theirs."""
        return next((r.usage for r in reversed(self.reports) if r.name == shown and r.status == "ok"), None)

    def stopped(self, shown: str, status: str, why: str) -> None:
        """A call stopped from outside (a decided vote, a deadline): its report says which, and why."""
        r = next((r for r in reversed(self.reports) if r.name == shown), None)
        if r is not None and r.status in ("ok", "cancelled"):
            r.status, r.error = status, why  # type: ignore[assignment]


class _Call(contextlib.AbstractAsyncContextManager[Spend]):
    """`Members._call`: a class, not a generator, since it is entered once per member call."""

    __slots__ = ("guard", "members", "name", "report", "spent")

    def __init__(self, members: Members, name: str, report: MemberReport, guarded: bool) -> None:
        self.members, self.name, self.report = members, name, report
        backend = members.backends[name]
        self.spent = spend.tracked(name, report.model, backend.cfg)
        self.guard = backend.guard.call() if guarded else None

    async def __aenter__(self) -> Spend:
        spent = self.spent.__enter__()
        if self.guard is not None:
            try:
                spent.notes = await self.guard.__aenter__()
            except BaseException as e:
                self.spent.__exit__(type(e), e, e.__traceback__)
                self.members._end(self.name, self.report, spent, e)
                raise
        return spent

    async def __aexit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            try:
                if self.guard is not None:
                    await self.guard.__aexit__(typ, exc, tb)
            finally:
                self.spent.__exit__(typ, exc, tb)
        finally:
            self.members._end(self.name, self.report, self.spent.entry, exc)
