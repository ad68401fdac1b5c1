"""Council wall time vs its members, measured in one run (a benchmark, not a test).

Six stub backends (../shared/bench/stub_backend.py) with first-byte latencies spread between
0.2 and 2 s; Shenron started as a user starts it; sequential requests through httpx.
  - every answer needed: the members disagree, so the vote waits for all six;
  - early decision: they agree, so the council decides after the 4th answer (4 > 0 + 2).
Prints council wall time next to the slowest member, the deciding member, the sum of member
latencies (the seed's sequential orchestrator) and the proxy's CPU per council request.

    .venv/bin/python bench/council_bench.py [--n 5] [--stub ../shared/bench/stub_backend.py]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.procs import ROOT, Proc, free_port, shenron

LATENCIES = [200, 560, 920, 1280, 1640, 2000]
MSGS = [{"role": "user", "content": "What is six times seven?"}]


def cpu_seconds(pid: int) -> float:
    """utime+stime (and reaped children) of a process and its descendants, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, sid = int(stat[1]), int(stat[3])
        if int(entry.name) == pid or sid == pid or ppid == pid:
            total += sum(int(x) for x in stat[11:15]) / tick
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5, help="requests per scenario")
    ap.add_argument("--stub", default=str(ROOT.parent / "shared" / "bench" / "stub_backend.py"))
    a = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"council-bench-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        blocks = []
        for i, ms in enumerate(LATENCIES):
            for mode, extra in (("agree", ["--answer", "The answer is 42.", "--tokens", "0"]), ("differ", [])):
                port = free_port()
                p = Proc([sys.executable, a.stub, "--port", str(port), "--latency-ms", str(ms), "--tokens", "16",
                          "--models", f"m{i}", *extra], tmp / f"stub-{mode}-{i}.log")
                procs.append(p)
                p.wait_http(f"http://127.0.0.1:{port}/health")
                blocks.append(f'[backends.{mode}{i}]\nurl = "http://127.0.0.1:{port}/v1"\nmodel = "m{i}"\n')
        agree = [f'"agree{i}"' for i in range(6)]
        differ = [f'"differ{i}"' for i in range(6)]
        config = "\n".join(blocks) + f"""
[models.every-answer]
strategy = "council"
members = [{", ".join(differ)}]
[models.early]
strategy = "council"
members = [{", ".join(agree)}]
"""
        proxy, base = shenron(tmp, config)
        procs.append(proxy)
        rows = []
        with httpx.Client(base_url=base, timeout=30) as c:
            for model, needed_ms in (("every-answer", max(LATENCIES)), ("early", sorted(LATENCIES)[3])):
                c.post("/chat/completions", json={"model": model, "messages": MSGS})  # warm the pool
                walls, cpu0 = [], cpu_seconds(proxy.p.pid)
                for _ in range(a.n):
                    t = time.perf_counter()
                    r = c.post("/chat/completions", json={"model": model, "messages": MSGS})
                    walls.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
                cpu = (cpu_seconds(proxy.p.pid) - cpu0) / a.n * 1000
                meta = r.json()["council"]
                rows.append((model, statistics.median(walls), max(LATENCIES), needed_ms, sum(LATENCIES), cpu,
                             meta["decided_by"]))
        print(f"six members, first-byte latencies {LATENCIES} ms, {a.n} sequential requests per row")
        print(f"{'scenario':14} {'wall p50':>9} {'slowest':>8} {'needed':>7} {'+ms':>7} {'sum':>7} "
              f"{'x sum':>6} {'CPU ms/req':>10}  decided_by")
        for model, wall, slowest, needed, total, cpu, how in rows:
            print(f"{model:14} {wall:9.1f} {slowest:8d} {needed:7d} {wall - needed:+7.1f} {total:7d} "
                  f"{wall / total:6.3f} {cpu:10.2f}  {how}")
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
