"""The virtual models a config defines: one Struct per strategy, told apart by its `strategy` key.

Each carries the settings its strategy reads, with their defaults and what they mean; the
config file (`routing.config`) holds them under `[models.NAME]` and checks their references.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Table(msgspec.Struct, rename="kebab", forbid_unknown_fields=True, omit_defaults=True):
    """A table of the routing config: kebab-case keys, and an unknown key is an error (a typo never
    silently changes routing). The same rules as `routing.settings.Section`."""


class _Routed(Table, kw_only=True):
    """What every virtual model may set: load-aware degradation to a smaller virtual model."""

    degrade_to: str | None = None
    max_inflight: int | None = None
    """Requests of this model in flight at or above which new ones run `degrade-to`."""
    max_p95_ms: float | None = None
    """p95 latency of its last 100 answers above which new ones run `degrade-to`."""
    min_healthy_members: int | None = None
    """Fewer members with a closed breaker than this: run `degrade-to`."""
    min_mem_available_pct: float | None = None
    """Host memory available below this percentage: run `degrade-to`."""


class SingleModel(_Routed, tag="single", tag_field="strategy"):
    """ultra-instinct: one member, then fallbacks while nothing has been sent."""

    members: list[str]
    fallbacks: list[str] = []
    description: str = ""
    cache_ttl_s: float = 0.0
    """Answer identical deterministic requests from a cache for this long (0: off)."""


class CouncilModel(_Routed, tag="council", tag_field="strategy"):
    """agent-lite / full-council: every member at once, merged by weighted vote."""

    members: list[str]
    weights: dict[str, float] = {}
    timeout_s: float = 60.0
    min_answers: int = 2
    merge: Literal["vote", "synthesize", "judge"] = "vote"
    chairman: str | None = None
    judge: str | None = None
    """merge = "judge": the backend shown the anonymized answers to name the most consistent (Universal
    Self-Consistency); default the chairman, else the first member."""
    similarity: float = 0.8
    """Lexical similarity (0..1) at which two free-text answers join one cluster."""
    sample_temperature: float | None = None
    """A member named more than once in `members` is sampled once per mention (`smol#1`, `smol#2`, ...,
    each with its own seed); at this temperature unless the client set one."""
    greedy_first: bool = False
    """With samples: the first sample of each backend (`smol#1`) is the model's greedy answer (temperature 0
    unless the client set one) and weighs `greedy-weight`, so the model's likeliest answer stands unless
    samples agree on another."""
    greedy_weight: float = 1.5
    similarity_backend: str | None = None
    """A backend serving an embedding model (`/embeddings`): answers whose embeddings' cosine reaches
    `embedding-similarity` share a cluster even when their words differ (early decision is then off)."""
    similarity_model: str | None = None
    """The embedding model to ask it for (default: the backend's `model`)."""
    embedding_similarity: float = 0.9
    tie_break: Literal["weight", "logprob", "judge", "chairman"] = "weight"
    """Between clusters of equal weight: the one with the heaviest member, the most confident answer
    (mean token logprob; members are asked for logprobs), or the one the judge / the chairman names
    when shown the tied answers; then the other of weight and logprob (where members gave logprobs); then
    the members' configured order (never which answer arrived first)."""
    early_decision: bool = True
    samples: Literal["all", "adaptive"] = "all"
    """`adaptive`: ask the first `first-wave` members (with `greedy-first`, the greedy answer and one
    sample), then more, in the order listed, only while the answer is unsettled (`adaptive-confidence`,
    routing/decide/rules.py `sample_more`), up to every member listed. `all`: every member at once."""
    adaptive_confidence: float = 0.9
    first_wave: int = 2
    confident_first: float | None = None
    """adaptive: ask the first member alone and keep its answer when its logprob confidence (the geometric
    mean of its tokens' probabilities) reaches this; below it, or from a backend that gives no logprobs,
    go on in waves. The first member is asked for logprobs (the client gets them only if it asked)."""
    heartbeat_s: float = 5.0
    description: str = ""
    cache_ttl_s: float = 0.0

    @property
    def first_asked(self) -> int:
        """How many members an adaptive council's first wave asks: one with `confident-first`, else
        `first-wave` (at least one). The council asks it; `shenron replay` checks a record against it."""
        return 1 if self.confident_first is not None else max(1, self.first_wave)


Thinking = Literal["solo", "duo-debate", "trio-consensus", "debate", "vote"]
THINKING: tuple[str, ...] = ("solo", "duo-debate", "trio-consensus", "debate", "vote")


class ThinkingModel(_Routed):
    """A thinking strategy as a virtual model; `members[0]` leads (proposes, refines)."""

    members: list[str]
    rounds: int = 2
    """debate: rounds in all, the first one independent."""
    weights: dict[str, float] = {}
    similarity: float = 0.8
    heartbeat_s: float = 5.0
    description: str = ""
    cache_ttl_s: float = 0.0

    @property
    def thinking(self) -> str:
        return str(type(self).__struct_config__.tag)


class SoloModel(ThinkingModel, tag="solo", tag_field="strategy"):
    """One model thinks, then answers."""


class DuoDebateModel(ThinkingModel, tag="duo-debate", tag_field="strategy"):
    """The first member proposes, the second critiques, the first refines."""


class TrioConsensusModel(ThinkingModel, tag="trio-consensus", tag_field="strategy"):
    """Three members answer in parallel; the council's weighted vote picks the answer."""


class DebateModel(ThinkingModel, tag="debate", tag_field="strategy"):
    """N rounds; from the second on each member sees the others' last answers; then a majority vote."""


class VoteModel(ThinkingModel, tag="vote", tag_field="strategy"):
    """Every member answers independently; the majority wins (one member, one vote)."""


class CheckConfig(Table):
    """How one language's code is checked without running it (`[checks.LANG]`)."""

    command: list[str]
    """argv of the check; `{file}` is the code's path and `{dir}` the fresh temp directory."""
    file: str = "main.txt"
    """Name of the file the code is written to, inside the temp directory."""
    files: dict[str, str] = {}
    """Other files written beside it first (a go.mod, a Cargo.toml, a tsconfig.json)."""
    aliases: list[str] = []
    """Other names of the language in a code fence (py, js, ts, rs...)."""
    timeout_s: float = 20.0
    memory_mb: int = 2048
    run: list[str] | None = None
    """Opt-in only: a command that executes the code (tests), after the check passed; off by default."""


class Rung(Table):
    """One step of the code ladder: a coder, how often it may try, how it thinks, who judges it."""

    coder: str
    attempts: int = 1
    thinking: Thinking = "solo"
    validators: list[str] | None = None
    """Unset: the previous rung's validators."""
    partners: list[str] | None = None
    """Who thinks with the coder (critic, voters, debaters); unset: the rung's validators, coder excluded."""


class EscalateModel(_Routed, tag="escalate", tag_field="strategy"):
    """codegen-escalate: climb the rungs until the validators' weighted score reaches `pass-score`."""

    rungs: list[Rung]
    pass_score: float = 8.0
    max_iterations: int = 10
    cloud_budget_usd: float | None = None
    """Cloud USD one request may spend; a rung that would exceed it is skipped and reported."""
    validator_weights: dict[str, float] = {}
    """Unset validators weigh their backend's `weight`."""
    language: str | None = None
    """Language when neither the code fence nor the request (`shenron.language`) names one."""
    debate_rounds: int = 2
    expected_tokens: int = 1024
    """Completion tokens assumed per call when estimating whether a cloud rung fits the budget."""
    heartbeat_s: float = 5.0
    description: str = ""
    cache_ttl_s: float = 0.0

    @property
    def members(self) -> list[str]:
        """Every backend the ladder may call, in order of first use."""
        seen: list[str] = []
        for r in self.rungs:
            for m in [r.coder, *(r.partners or []), *(r.validators or [])]:
                if m not in seen:
                    seen.append(m)
        return seen


RISK_WORDS = ["delete", "remove", "rm", "drop", "destroy", "invest", "trade", "buy", "sell", "money", "deploy",
              "restart", "reboot", "shutdown", "password", "key", "secret", "token", "critical", "production", "live"]


class CascadeModel(_Routed, tag="cascade", tag_field="strategy"):
    """One fast virtual model answers; another takes over when confidence is low, the request risky, or asked."""

    first: str
    escalate_to: str
    min_confidence: float = 0.95
    risk_words: list[str] = msgspec.field(default_factory=lambda: list(RISK_WORDS))
    second_opinion: str | None = None
    """A backend asked in parallel for agreement when the first answer has no logprobs; unset: no fallback."""
    confidence: Literal["logprobs", "agreement"] = "logprobs"
    """`agreement`: for backends that give no logprobs, `first` is asked twice at once (as the client asked,
    and one sample at `agreement-temperature`); two answers that make the same claim keep the cheap answer
    (confidence 1), others are as confident as they are alike."""
    agreement_temperature: float = 0.7
    heartbeat_s: float = 5.0
    escalate_on_evidence: bool = True
    """An agent's turn whose own tool results failed (a non-zero exit, failing tests, a compiler error, a
    traceback), or that repeats one call, goes to `escalate-to` before `first` is asked."""
    repeat_limit: int = 3
    """The same tool call with the same result this many times in a row is a loop: escalate."""
    hold_turns: int = 1
    """After a failure, turns that stay escalated until a tool result shows success."""
    description: str = ""
    cache_ttl_s: float = 0.0


VirtualModel = (SingleModel | CouncilModel | EscalateModel | CascadeModel | SoloModel | DuoDebateModel
                | TrioConsensusModel | DebateModel | VoteModel)
STRATEGY_NAMES = ("single", "council", "escalate", "cascade", *THINKING)
