"""GET /status: one self-refreshing HTML page a person reads at a glance. No scripts, no external assets."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from proxy.accounting import Books
from routing.core import CouncilReport
from routing.router import Router
from routing.settings import redacted
from routing.upstream.guard import Guard
from routing.upstream.pool import PooledBackend

REFRESH_S = 5
STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2330;background:#f7f8fa}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;background:#fff;min-width:40rem}
th,td{border:1px solid #d8dce3;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f5}.ok{color:#11772f;font-weight:600}.bad{color:#b3261e;font-weight:600}
.muted{color:#667}.tiles{display:flex;gap:1rem;flex-wrap:wrap}
.tile{background:#fff;border:1px solid #d8dce3;padding:.6rem 1rem;min-width:9rem}
.tile b{display:block;font-size:1.5rem}
"""


def _e(v: Any) -> str:
    return escape(str(v))


def _ago(ts: float) -> str:
    s = max(0, int(time.time() - ts))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def _health(g: Guard, up: bool | None) -> str:
    if g.state == "open":
        state = f'<span class="bad">down: circuit open</span> <span class="muted">{_e(g.breaker.reason)}</span>'
    elif g.loading:
        state = '<span class="muted">loading model</span>'
    elif g.state == "half-open":
        state = '<span class="muted">half-open (trying)</span>'
    elif g.probed_at is not None or up:
        state = '<span class="ok">up</span>'
    else:
        state = '<span class="bad">down</span>' if up is False else '<span class="muted">not probed yet</span>'
    if g.loaded is not None:
        state += ' <span class="muted">(loaded)</span>' if g.loaded else ' <span class="muted">(not loaded)</span>'
    if g.pool is not None:
        state += f' <span class="muted">{_e(g.pool.name)} {g.pool.inflight}/{g.pool.max_concurrent or "∞"}</span>'
    return state


def _backends(router: Router) -> str:
    rows = []
    for name, b in router.backends.items():
        g = router.health.guards[name]
        served = ", ".join(router.served.get(name, [])) or "-"
        endpoints = b.endpoints if isinstance(b, PooledBackend) else []
        where = f"pool of {len(endpoints)}" if endpoints else redacted(b.cfg.url)
        rows.append(f"<tr><td>{_e(name)}</td><td>{_health(g, router.reachable.get(name))}</td><td>{_e(b.model)}</td>"
                    f"<td>{_e(served)}</td><td>{_e(where)}</td><td>{'cloud' if b.cfg.is_cloud else 'local'}</td></tr>")
        for e in endpoints:
            rows.append(f'<tr><td class="muted">&nbsp;&nbsp;{_e(name)} @ {_e(e.label)}</td>'
                        f"<td>{_health(e.backend.guard, None)} <span class=\"muted\">{e.outstanding} outstanding"
                        f"</span></td><td></td><td></td><td>{_e(redacted(e.url))}</td><td></td></tr>")
    head = "<tr><th>backend</th><th>health</th><th>model</th><th>models loaded / served</th><th>url</th><th></th></tr>"
    return f"<table>{head}{''.join(rows) or '<tr><td colspan=6>no backends</td></tr>'}</table>"


def _decisions(books: Books) -> str:
    rows = []
    for d in books.recent:
        council: CouncilReport | None = d.get("council")
        votes = []
        for m in d["members"]:
            cl = next((x.cluster for x in council.members if x.name == m.name), None) if council else None
            mark = "ok" if m.status == "ok" else "bad"
            vote = f" → answer {cl}" if cl is not None else ""
            votes.append(f'<span class="{mark}">{_e(m.name)}</span> {_e(m.status)}{_e(vote)} '
                         f'<span class="muted">{m.latency_ms} ms</span>')
        agreement = council.agreement if council else None
        outcome = ("cached" if d["cached"] else f"winner {council.winner}" if council and council.winner
                   else d.get("error") or "")
        status_cls = "ok" if d["status"] < 400 else "bad"
        rows.append(
            f"<tr><td>{_ago(d['ts'])}</td><td>{_e(d['model'])}</td><td>{_e(d['strategy'])}</td>"
            f"<td class='{status_cls}'>{d['status']}</td><td>{_e(outcome)}</td>"
            f"<td>{'' if agreement is None else f'{agreement:.0%}'}</td><td>{d['latency_ms']} ms</td>"
            f"<td>{'<br>'.join(votes)}</td></tr>")
    head = ("<tr><th>when</th><th>model</th><th>strategy</th><th>status</th><th>outcome</th><th>agreement</th>"
            "<th>latency</th><th>members: vote, latency</th></tr>")
    return f"<table>{head}{''.join(rows) or '<tr><td colspan=8>no requests yet</td></tr>'}</table>"


def _fleet(router: Router) -> str:
    fleet = router.fleet
    if fleet is None:
        return '<div class="tile">fleet<b>this process</b><span class="muted">GPU slots counted here only</span></div>'
    if fleet.online:
        return (f'<div class="tile">fleet<b>{fleet.replicas} replica(s)</b>'
                '<span class="ok">Redis: GPU slots shared</span></div>')
    return (f'<div class="tile">fleet<b>{fleet.replicas} replica(s)</b><span class="bad">Redis unreachable since '
            f'{_ago(fleet.offline_since or time.time())}</span> <span class="muted">keeping to this replica\'s '
            f'share of each GPU; {_e(fleet.last_error)}</span></div>')


def render(router: Router, books: Books, spend_today: tuple[int, float, float], store: str) -> str:
    inflight = sum(books.inflight.values())
    per_model = ", ".join(f"{_e(m)}: {n}" for m, n in books.inflight.items() if n) or "none"
    tokens, local, cloud = spend_today
    up = sum(1 for ok in router.reachable.values() if ok)
    tiles = (f'<div class="tile">backends up<b>{up} / {len(router.backends)}</b></div>'
             f'<div class="tile">in flight<b>{inflight}</b><span class="muted">{per_model}</span></div>'
             f'<div class="tile">spend today (UTC)<b>${local + cloud:.4f}</b>'
             f'<span class="muted">cloud ${cloud:.4f} · local ${local:.4f}</span></div>'
             f'<div class="tile">tokens today<b>{tokens}</b></div>'
             + _fleet(router))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Shenron status</title>"
            f'<meta http-equiv="refresh" content="{REFRESH_S}"><meta name=viewport content="width=device-width">'
            f"<style>{STYLE}</style></head><body><h1>Shenron</h1>"
            f'<div class="muted">virtual models: {_e(", ".join(router.virtual) or "none")} · ledger: {_e(store)} · '
            f"refreshes every {REFRESH_S}s · {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</div>"
            f'<h2>At a glance</h2><div class="tiles">{tiles}</div>'
            f"<h2>Backends</h2>{_backends(router)}"
            f"<h2>Last decisions</h2>{_decisions(books)}</body></html>")
