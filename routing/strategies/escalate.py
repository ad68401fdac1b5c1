"""`escalate` (codegen-escalate): a ladder of coders, each attempt checked and scored until it passes.

Each attempt: the rung's thinking strategy produces an answer (the coder leads), the code is
extracted (fence language, else the request's `shenron.language`, else the model's
`language`), checked without being run (`routing.sandbox`), and, when it compiles, scored by
the rung's validators in parallel; their weighted mean must reach `pass-score`. A failed
check scores 0 and its output, like the validators' issues, goes into the next attempt.
When every attempt is spent the best-scoring code is returned with a note that it did not
reach the bar. Cloud spend is capped per request by `cloud-budget-usd` (and the key's budget):
a rung whose next attempt would exceed what is left is skipped and reported.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from routing import sandbox
from routing.config import Config
from routing.config import private_paths as sandbox_private
from routing.core import (
    Answer,
    CouncilReport,
    Event,
    IterationReport,
    Reply,
    Report,
    Result,
    RungReport,
    UsageEvent,
    replay,
)
from routing.errors import AllMembersFailed, MemberFailure
from routing.models import CheckConfig, EscalateModel, Rung
from routing.report import Timer, cost
from routing.request import Message
from routing.strategies.base import Backends, Call, narrate
from routing.strategies.thinking import usage_of
from routing.thinking import PARTNERS, THINKERS, Asker, Options, calls
from routing.tokens import ZERO, Usage, estimate_tokens
from routing.vote.judging import Code, extract_code, parse_verdict, weighted_score
from routing.wire import prompt_text

CHECK_SHOWN = 1000
"""Characters of check output kept in `council.iterations`."""

CODER = ("Write code for the user's request. Think it through first if it helps, then give the complete, "
         "self-contained code in ONE fenced code block{lang}. Do not leave parts out.")

VALIDATOR = ("You are a strict code reviewer. Judge the code below against the task: correctness, edge cases, "
             "security, clarity. Reply with JSON only, no prose: "
             '{"score": <number from 0 to 10>, "issues": ["<concrete problem and how to fix it>", ...]}. '
             "10 means correct and complete with nothing to fix; 8 means good enough to ship.")


@dataclass
class Attempt:
    report: IterationReport
    code: Code | None
    answer: str


@dataclass
class Ladder:
    """One request's climb: what was tried, what it cost, and the progress lines for a stream."""

    call: Call
    asker: Asker
    language: str | None
    attempts: list[Attempt] = field(default_factory=list)
    rungs: list[RungReport] = field(default_factory=list)
    passed: Attempt | None = None


def _task(messages: list[Message]) -> str:
    """The request as the validators see it: the conversation's user turns, the last one last."""
    return "\n\n".join(m.text for m in messages if m.role in ("user", "system", "developer"))


def instructed(messages: list[Message], text: str) -> list[Message]:
    """The messages with our instructions in the system message (one system message: some templates refuse two)."""
    first = messages[0] if messages else None
    if first is not None and first.role in ("system", "developer") and isinstance(first.content, str):
        return [msgspec.structs.replace(first, content=f"{text}\n\n{first.content}"), *messages[1:]]
    return [Message("system", text), *messages]


def _feedback(last: Attempt, pass_score: float) -> list[Message]:
    r = last.report
    if last.code is None:
        return [Message("assistant", last.answer),
                Message("user", "Your answer had no code block. Answer with the complete code in one fenced code "
                                "block.")]
    said = []
    if r.compiled is False:
        said.append(f"It does not pass the compile check:\n```\n{r.check_output}\n```")
    elif r.check_output:
        said.append(f"Compile check output:\n```\n{r.check_output}\n```")
    if r.issues:
        said.append("Reviewers found these issues:\n" + "\n".join(f"- {i}" for i in r.issues))
    said.append(f"It scored {r.score:g} of 10; it needs {pass_score:g}. Fix every problem and answer with the "
                "complete corrected code in one fenced code block.")
    fence = r.language or ""
    return [Message("assistant", f"```{fence}\n{last.code.text}```"), Message("user", "\n\n".join(said))]


def final_text(best: Attempt, passed: bool, pass_score: float, tried: int) -> str:
    assert best.code is not None
    block = f"```{best.report.language or ''}\n{best.code.text}```"
    if passed:
        return block
    issues = "".join(f"\n- {i}" for i in best.report.issues[:10])
    why = (f"\n\nThis code did not reach the bar: the best of {tried} attempt(s) scored {best.report.score:g} of 10 "
           f"(pass score {pass_score:g}).")
    if best.report.compiled is False:
        why += " It does not pass the compile check:\n```\n" + best.report.check_output + "\n```"
    return block + why + (f" Open issues:{issues}" if issues else "")


class Escalate:
    label = "escalate"

    def __init__(self, name: str, vm: EscalateModel, backends: Backends,
                 checks: Mapping[str, CheckConfig] | None = None, private: tuple[Path, ...] = (),
                 uids: range = sandbox.UIDS) -> None:
        self.name = name
        self.private = private
        self.uids = uids
        """The store and config files: a toolchain installed beside them is refused (`sandbox.toolchain`)."""
        self.vm = vm
        self.backends = backends
        self.checks = sandbox.table(checks)
        self.validators: list[list[str]] = []
        last: list[str] = []
        for r in vm.rungs:
            last = list(r.validators) if r.validators else last
            self.validators.append(last)
        self.weights = {v: vm.validator_weights.get(v, backends[v].cfg.weight) for vs in self.validators for v in vs}

    @classmethod
    def from_config(cls, name: str, vm: EscalateModel, backends: Backends, cfg: Config | None = None) -> Escalate:
        if cfg is None:
            return cls(name, vm, backends)
        first, last = cfg.sandbox.uids
        return cls(name, vm, backends, cfg.checks, sandbox_private(cfg), range(first, last + 1))

    def _partners(self, i: int, rung: Rung) -> list[str]:
        if rung.partners is not None:
            return [p for p in rung.partners if p != rung.coder]
        return [v for v in self.validators[i] if v != rung.coder][:PARTNERS[rung.thinking]]

    def _estimate(self, i: int, rung: Rung, messages: list[Message], call: Call) -> float:
        """What the rung's next attempt would cost in the cloud, from the prompt's size and the expected answer."""
        prompt = estimate_tokens(prompt_text(messages))
        out = call.request.max_completion_tokens or call.request.max_tokens or self.vm.expected_tokens
        lead_calls, partner_calls = calls(rung.thinking, self.vm.debate_rounds)
        thinkers = [(rung.coder, lead_calls)] + [(p, partner_calls) for p in self._partners(i, rung)]
        total = 0.0
        for member, n in thinkers:
            total += n * cost(Usage(prompt, out, prompt + out), self.backends[member].cfg)
        for v in self.validators[i]:
            total += cost(Usage(prompt + out, 300, prompt + out + 300), self.backends[v].cfg)
        return total

    async def _judge(self, ladder: Ladder, i: int, code: Code, check_output: str
                     ) -> tuple[dict[str, float], list[str], dict[str, str]]:
        task = _task(ladder.call.request.messages)
        shown = f"\n\nCompile check output:\n{check_output}" if check_output else ""
        messages = [Message("system", VALIDATOR),
                    Message("user", f"Task:\n{task}\n\nCode ({code.language or 'unknown language'}):\n"
                                    f"```{code.language or ''}\n{code.text}```{shown}")]
        validators = self.validators[i]
        answers = await ladder.asker.poll(
            {v: functools.partial(ladder.asker.ask, v, messages, "validator", temperature=0) for v in validators},
            ladder.asker.deadline(validators))
        scores: dict[str, float] = {}
        issues: list[str] = []
        invalid: dict[str, str] = {}
        for v in validators:
            if v not in answers:
                failure = next((r for r in reversed(ladder.asker.reports) if r.name == v and r.role == "validator"),
                               None)
                invalid[v] = f"{failure.status}: {failure.error}" if failure else "no answer"
                continue
            verdict = parse_verdict(answers[v])
            if verdict is None:
                invalid[v] = "no usable score in its answer: " + " ".join(answers[v].split())[:120]
                continue
            scores[v] = verdict.score
            issues += [f"{i_}" for i_ in verdict.issues if i_ not in issues]
        return scores, issues, invalid

    def _coder_messages(self, ladder: Ladder) -> list[Message]:
        """What the coder is asked: our instructions, the conversation, and the last attempt's findings."""
        lang_hint = f" (```{ladder.language})" if ladder.language else ""
        messages = instructed(ladder.call.request.messages, CODER.format(lang=lang_hint))
        if ladder.attempts:
            messages += _feedback(ladder.attempts[-1], self.vm.pass_score)
        return messages

    async def _attempt(self, ladder: Ladder, messages: list[Message], n: int, i: int, rung: Rung) -> Attempt:
        t = Timer()
        before = len(ladder.asker.reports)
        opts = Options(rounds=self.vm.debate_rounds, weights={m: b.cfg.weight for m, b in self.backends.items()})
        report = IterationReport(attempt=n, rung=i + 1, coder=rung.coder, thinking=rung.thinking, compiled=None,
                                 check_output="", scores={}, score=0.0, cost_usd=0.0, latency_ms=0)
        code: Code | None = None
        answer = ""
        try:
            thought = await THINKERS[rung.thinking](ladder.asker, messages, rung.coder, self._partners(i, rung), opts)
            answer = thought.text
            code = extract_code(answer, ladder.language,
                                lambda tag, want: sandbox.language(tag, self.checks) == want)
            report.note = thought.note
        except (MemberFailure, AllMembersFailed) as e:
            report.compiled, report.check_output = False, f"the coder failed: {e}"[:CHECK_SHOWN]
        if code is not None:
            report.language = sandbox.language(code.language, self.checks) or ladder.language
            result = await sandbox.check(code.text, report.language, self.checks, self.private, self.uids)
            report.compiled, report.check_output = result.ok, result.output[:CHECK_SHOWN]
            if result.ok is not False:
                report.scores, report.issues, report.invalid = await self._judge(ladder, i, code, result.output)
                score = weighted_score(report.scores, self.weights)
                report.score = score if score is not None else 0.0
                if score is None:
                    report.note = "no validator gave a usable score"
        elif answer:
            report.compiled, report.check_output = False, "no code in the answer"
        report.cost_usd = round(sum(m.cost_usd or 0.0 for m in ladder.asker.reports[before:]), 8)
        report.latency_ms = t.ms()
        return Attempt(report, code, answer)

    @staticmethod
    def _line(r: IterationReport) -> str:
        check = {True: "compiles", False: "does not compile", None: "not checked"}[r.compiled]
        if r.check_output.startswith(("the coder failed", "no code")):
            check = r.check_output.split(":")[0]
        return f"attempt {r.attempt} · {r.coder} · {r.thinking} · {check} · score {r.score:g}"

    async def climb(self, ladder: Ladder) -> None:
        n = 0
        budget = ladder.asker.budget
        for i, rung in enumerate(self.vm.rungs):
            rr = RungReport(rung=i + 1, coder=rung.coder, thinking=rung.thinking, status="failed")
            ladder.rungs.append(rr)
            if ladder.passed is not None or n >= self.vm.max_iterations:
                rr.status = "not reached"
                continue
            for _ in range(rung.attempts):
                if n >= self.vm.max_iterations:
                    break
                messages = self._coder_messages(ladder)
                need = self._estimate(i, rung, messages, ladder.call)
                if need > 0 and not budget.affords(need):
                    rr.status = "skipped" if rr.attempts == 0 else rr.status
                    rr.reason = (f"the next attempt would cost about ${need:.4f}; "
                                 f"${budget.left():.4f} of the cloud budget is left")
                    ladder.asker.progress(f"rung {i + 1} · {rung.coder} · skipped: {rr.reason}")
                    break
                n += 1
                attempt = await self._attempt(ladder, messages, n, i, rung)
                ladder.attempts.append(attempt)
                rr.attempts += 1
                ladder.asker.progress(self._line(attempt.report))
                if attempt.code is not None and attempt.report.compiled is not False \
                        and attempt.report.score >= self.vm.pass_score:
                    ladder.passed = attempt
                    rr.status = "passed"
                    break

    def _ladder(self, call: Call) -> Ladder:
        budget = call.budget
        if self.vm.cloud_budget_usd is not None:
            budget.cap(self.vm.cloud_budget_usd)
        asker = Asker.for_request(self.backends, budget, call.request)
        lang = call.extras.get("language") if isinstance(call.extras.get("language"), str) else self.vm.language
        return Ladder(call, asker, sandbox.language(lang, self.checks))

    def _result(self, ladder: Ladder, timer: Timer) -> tuple[str, CouncilReport]:
        with_code = [a for a in ladder.attempts if a.code is not None]
        if not with_code:
            failures = [MemberFailure(r.name, r.error or r.status) for r in ladder.asker.reports if r.status != "ok"]
            skipped = [r for r in ladder.rungs if r.status == "skipped"]
            what = (f"{self.name!r} produced no code in {len(ladder.attempts)} attempt(s)"
                    + (f"; {len(skipped)} rung(s) skipped for the cloud budget" if skipped else ""))
            raise AllMembersFailed(what, failures)
        best = ladder.passed or max(reversed(with_code), key=lambda a: (a.report.compiled is not False,
                                                                         a.report.score))
        passed = ladder.passed is not None
        members = ladder.asker.reports
        note = None if passed else (f"no attempt reached the pass score {self.vm.pass_score:g}; "
                                    f"returned the best (attempt {best.report.attempt}, score {best.report.score:g})")
        report = CouncilReport(
            virtual_model=self.name, strategy=self.label, winner=best.report.coder, members=members,
            degraded=not passed or any(m.status in ("error", "timeout", "skipped") for m in members),
            decided_by="passed" if passed else "best-effort", latency_ms=timer.ms(), note=note,
            score=best.report.score, pass_score=self.vm.pass_score,
            iterations=[a.report for a in ladder.attempts], rungs=ladder.rungs,
        ).totalled()
        return final_text(best, passed, self.vm.pass_score, len(ladder.attempts)), report

    async def complete(self, call: Call) -> Result:
        timer = Timer()
        ladder = self._ladder(call)
        await self.climb(ladder)
        text, report = self._result(ladder, timer)
        return Result(Reply([Answer(text=text)], usage_of(ladder.asker, report.winner)), report)

    async def stream(self, call: Call) -> AsyncIterator[Event]:
        timer = Timer()
        lines: asyncio.Queue[str] = asyncio.Queue()
        ladder = self._ladder(call)
        ladder.asker.progress = lines.put_nowait
        work = asyncio.create_task(self.climb(ladder))
        async with aclosing(narrate(work, lines, self.vm.heartbeat_s)) as progress:
            async for e in progress:
                yield e
        work.result()
        text, report = self._result(ladder, timer)
        for e in replay(Answer(text=text)):
            yield e
        yield UsageEvent(usage_of(ladder.asker, report.winner) or ZERO)
        yield Report(report)
