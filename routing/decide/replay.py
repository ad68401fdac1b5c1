"""`shenron replay RECORDS.jsonl --config NEW.toml`: re-decide recorded traffic under a new config. Pure.

Each decision record holds the inputs the rules saw (load counters, the request's word hashes,
whether the client asked, the first answer's confidence) and what was decided. Replaying runs
the same pure rules with the new config's thresholds and lists every request whose routing
would change. A confidence that was never computed (the request escalated before the first
model answered) cannot be replayed; such requests are counted as unknown, not guessed. An adaptive
council's record keeps the vote after each wave of samples: a new `adaptive-confidence` that stops
at an earlier wave is a change; one that would want samples never asked is counted as unknown.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from routing.config import Config
from routing.decide import rules
from routing.models import CascadeModel, CouncilModel


@dataclass
class Change:
    id: str
    model: str
    rule: str
    before: str
    after: str


def _route(rec: dict[str, object], cfg: Config) -> tuple[str | None, str | None]:
    """(degraded_to, escalated_because) under `cfg`; "?" where the record cannot tell."""
    vm = cfg.models.get(str(rec.get("model")))
    if vm is None:
        return None, None
    load = rec.get("load") or {}
    assert isinstance(load, dict)
    why = rules.degrade(rules.Load(int(load.get("inflight") or 0), load.get("p95_ms"),
                                   int(load.get("healthy_members") or 0), load.get("mem_available_pct")),
                        {k: getattr(vm, k) for k in ("max_inflight", "max_p95_ms", "min_healthy_members",
                                                     "min_mem_available_pct")})
    degraded = vm.degrade_to if why and vm.degrade_to else None
    escalated: str | None = None
    cascade = rec.get("cascade")
    if isinstance(vm, CascadeModel) and isinstance(cascade, dict) and not degraded:
        before = rules.escalate_before(bool(cascade.get("asked")), cascade.get("words") or [], vm.risk_words)
        evidence = cascade.get("evidence")
        if before is not None:
            escalated = before[0]
        elif isinstance(evidence, list) and evidence and vm.escalate_on_evidence:
            escalated = str(evidence[0])
        else:
            conf = cascade.get("confidence")
            recorded = cascade.get("escalated_because")
            if conf is None and (recorded in ("asked", "risk-word") or str(recorded).startswith(("tool-", "holding"))):
                escalated = "?"
            else:
                after = rules.escalate_after(conf if isinstance(conf, (int, float)) else None, vm.min_confidence)
                escalated = after[0] if after else None
    return degraded, escalated


def _sampled(rec: dict[str, object], cfg: Config) -> int | str | None:
    """How many samples an adaptive council would have asked under `cfg`'s `adaptive-confidence`: a number
    when it stops at or before the last recorded wave, "?" when it would want samples never asked, None
    when the record or the model is not an adaptive council."""
    vm = cfg.models.get(str(rec.get("model")))
    sampling = rec.get("sampling")
    if not isinstance(vm, CouncilModel) or vm.samples != "adaptive" or not isinstance(sampling, dict):
        return None
    weights = [float(w) for w in sampling.get("weights") or []]
    waves = sampling.get("waves") or []
    if waves and int(waves[0]["asked"]) != vm.first_asked:
        return "?"  # the new rule's first wave was never asked as such
    for i, wave in enumerate(waves):
        first = wave.get("confidence")
        if i == 0 and vm.confident_first is not None:
            more, _ = rules.first_alone(first if isinstance(first, (int, float)) else None, vm.confident_first,
                                        vm.first_wave - 1)
        else:
            more, _ = rules.sample_more([float(w) for w in wave["weights"]], weights[int(wave["asked"]):],
                                        vm.adaptive_confidence)
        if more == 0:
            return int(wave["asked"])
    return "?"


def replay(records: Iterable[dict[str, object]], new: Config) -> tuple[list[Change], Counter[str]]:
    changes: list[Change] = []
    stats: Counter[str] = Counter()
    for rec in records:
        stats["requests"] += 1
        model = str(rec.get("model"))
        if model not in new.models:
            stats["model gone"] += 1
            continue
        degraded, escalated = _route(rec, new)
        was_degraded = rec.get("degraded_to")
        if (was_degraded or None) != degraded:
            changes.append(Change(str(rec.get("id")), model, "degrade", str(was_degraded or "no"),
                                  str(degraded or "no")))
        cascade = rec.get("cascade")
        if isinstance(cascade, dict):
            was = cascade.get("escalated_because")
            if escalated == "?":
                stats["confidence unknown"] += 1
            elif (was or None) != escalated:
                changes.append(Change(str(rec.get("id")), model, "cascade", f"escalated ({was})" if was else "first",
                                      f"escalated ({escalated})" if escalated else "first"))
        asked = _sampled(rec, new)
        sampling = rec.get("sampling")
        if asked == "?":
            stats["samples unknown"] += 1
        elif asked is not None and isinstance(sampling, dict) and sampling.get("waves"):
            was = int(sampling["waves"][-1]["asked"])
            if asked != was:
                changes.append(Change(str(rec.get("id")), model, "sampling", f"{was} asked", f"{asked} asked"))
    stats["changed"] = len({c.id for c in changes})
    return changes, stats


def read(path: str) -> list[dict[str, object]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not a JSON decision record ({e})") from None
            if isinstance(rec, dict):
                out.append(rec)
    return out


def render(changes: list[Change], stats: Counter[str]) -> str:
    lines = [f"{c.id}  {c.model}  {c.rule}: {c.before} -> {c.after}" for c in changes]
    summary = (f"{stats['requests']} request(s) replayed, {stats['changed']} would route differently"
               + (f", {stats['confidence unknown']} with a confidence never measured" if stats["confidence unknown"]
                  else "")
               + (f", {stats['model gone']} for models the new config lacks" if stats["model gone"] else ""))
    by_rule = Counter(c.rule + ": " + c.before + " -> " + c.after for c in changes)
    return "\n".join([*lines, "", summary, *(f"  {n} x {k}" for k, n in by_rule.most_common())])
