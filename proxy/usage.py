"""`shenron usage`: the ledger summed per key, model or member, as a table, CSV or JSON."""

from __future__ import annotations

import calendar
import csv
import io
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from proxy.store import KeyRecord, LedgerRow

By = Literal["key", "model", "member", "session"]
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since(text: str, now: float | None = None) -> float:
    """`7d`, `12h`, `30m`, or an ISO date like 2026-11-01 (UTC)."""
    now = time.time() if now is None else now
    m = _SINCE.match(text.strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%d")))
    except ValueError:
        raise ValueError(f"--since: expected a duration like 7d, 12h, 30m or a date like 2026-11-01, "
                         f"got {text!r}") from None


def percentile(values: list[int], p: float) -> int:
    """Nearest-rank percentile."""
    if not values:
        return 0
    s = sorted(values)
    rank = max(1, -(-len(s) * p // 100))
    return s[int(rank) - 1]


@dataclass
class Line:
    group: str
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    local_usd: float = 0.0
    cloud_usd: float = 0.0
    escalations: int = 0
    latencies: list[int] = field(default_factory=list)

    def add(self, r: LedgerRow) -> None:
        self.requests += 1
        self.escalations += bool(r.escalated)
        self.errors += r.status >= 400
        self.prompt_tokens += r.prompt_tokens
        self.cached_tokens += sum(m.cached_tokens for m in r.members)
        self.completion_tokens += r.completion_tokens
        self.local_usd += r.cost_usd - r.cloud_cost_usd
        self.cloud_usd += r.cloud_cost_usd
        self.latencies.append(r.latency_ms)

    def as_dict(self) -> dict[str, object]:
        return {"group": self.group, "requests": self.requests, "errors": self.errors,
                "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "completion_tokens": self.completion_tokens,
                "local_cost_usd": round(self.local_usd, 6), "cloud_cost_usd": round(self.cloud_usd, 6),
                "escalations": self.escalations, "p50_ms": percentile(self.latencies, 50),
                "p95_ms": percentile(self.latencies, 95)}


def summarize(rows: Iterable[LedgerRow], by: By, keys: dict[str, KeyRecord]) -> list[Line]:
    """One line per group and a TOTAL line; `member` splits each request into its members' calls."""
    lines: dict[str, Line] = {}
    total = Line("TOTAL")

    def key_name(kid: str | None) -> str:
        if kid is None:
            return "(no key)"
        k = keys.get(kid)
        return f"{k.name} ({kid})" if k else kid

    for r in rows:
        total.add(r)
        if by == "member":
            for m in r.members:
                line = lines.setdefault(m.name, Line(m.name))
                line.requests += 1
                line.errors += m.status != "ok"
                line.prompt_tokens += m.prompt_tokens
                line.cached_tokens += m.cached_tokens
                line.completion_tokens += m.completion_tokens
                if m.cloud:
                    line.cloud_usd += m.cost_usd
                else:
                    line.local_usd += m.cost_usd
                if m.status == "ok":
                    line.latencies.append(m.latency_ms)
            continue
        name = key_name(r.key_id) if by == "key" else (r.session or "(no session)") if by == "session" else r.model
        lines.setdefault(name, Line(name)).add(r)
    return [*sorted(lines.values(), key=lambda x: (-x.requests, x.group)), total]


COLUMNS = ("group", "requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "local_cost_usd",
           "cloud_cost_usd", "escalations", "p50_ms", "p95_ms")


def render(lines: list[Line], fmt: str, by: By) -> str:
    data = [ln.as_dict() for ln in lines]
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode({"by": by, "rows": data}), indent=2).decode()
    if fmt == "csv":
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(data)
        return out.getvalue().rstrip("\n")
    header = [by, "requests", "errors", "tokens in", "cached in", "tokens out", "local $", "cloud $", "escalated",
              "p50 ms", "p95 ms"]
    cells = [header] + [[str(d["group"]), str(d["requests"]), str(d["errors"]), str(d["prompt_tokens"]),
                         str(d["cached_tokens"]), str(d["completion_tokens"]), f"{d['local_cost_usd']:.4f}",
                         f"{d['cloud_cost_usd']:.4f}", str(d["escalations"]), str(d["p50_ms"]), str(d["p95_ms"])]
                        for d in data]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                     strict=True))) for r in cells)
