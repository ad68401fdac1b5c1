#!/usr/bin/env python3
"""Python opcodes a request runs, function by function: where Shenron's own Python goes, exactly.

    .venv/bin/python bench/opcodes.py [--save FILE] [--against FILE] [--top 40] -- [bench/inprocess.py options]
    .venv/bin/python bench/opcodes.py --serve FILE -- serve --config C --port P  (serve_instructions.py --opcodes)

`bench/inprocess.py` run with a tracer (`sys.settrace`, opcode events) in place of cProfile: every opcode the
measured requests execute is counted against its function. Unlike a profile's times, the counts are the
same from run to run and machine to machine (but for work that depends on timing: a council's early
decision, the ledger's batches, how reads fall), so two builds or two modes can be told apart by a few
opcodes. What it cannot see is the C under them (msgspec, bytes methods, the loop): callgrind
(`bench/serve_instructions.py`, `bench/inprocess.py` under valgrind) counts that. `--save` keeps the counts;
`--against` prints the difference from saved ones (another mode, or the same mode of another build).

    .venv/bin/python bench/opcodes.py --save /tmp/pass.pkl -- --mode pass -n 200 --no-probes --no-ledger
    .venv/bin/python bench/opcodes.py --against /tmp/pass.pkl -- --mode stream -n 200 --no-probes --no-ledger

A benchmark, not a test: it prints what it counted.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pickle
import sys
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
Key = tuple[str, int, str]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--save", help="keep the counts (and the request count) in this file")
    ap.add_argument("--against", help="print the difference from counts saved by --save")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--serve", metavar="FILE", help="run `shenron` with the options after --, counting from SIGUSR1 "
                    "to SIGUSR2 and saving the counts to FILE then (`bench/serve_instructions.py --opcodes`)")
    ap.add_argument("inprocess", nargs=argparse.REMAINDER, help="-- then bench/inprocess.py's options")
    a = ap.parse_args()
    rest = a.inprocess[1:] if a.inprocess[:1] == ["--"] else a.inprocess
    counts: collections.Counter[Key] = collections.Counter()
    root = str(HERE.parent) + "/"

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call":
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        code = frame.f_code
        name = code.co_name
        if code.co_filename == "<string>":  # a dataclass's generated __init__: which class's
            name = f"{name} of {type(frame.f_locals.get('self')).__name__}"
        key = (code.co_filename.replace(root, "").split("site-packages/")[-1].split("lib/python3")[-1],
               code.co_firstlineno, name)

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[key] += 1
            return local

        return local

    if a.serve:  # the server itself, uvicorn's Python included: counted between two signals
        import signal

        from proxy import cli

        def begin(*_: Any) -> None:
            counts.clear()
            sys.settrace(trace)

        def end(*_: Any) -> None:
            sys.settrace(None)
            Path(a.serve).write_bytes(pickle.dumps(dict(counts)))

        signal.signal(signal.SIGUSR1, begin)
        signal.signal(signal.SIGUSR2, end)
        sys.exit(cli.main(rest))

    class Tracer:  # what inprocess.py calls on its cProfile.Profile around the measured requests
        def enable(self) -> None:
            sys.settrace(trace)

        def disable(self) -> None:
            sys.settrace(None)

        def dump_stats(self, path: str) -> None:
            pass

    cProfile.Profile = Tracer  # type: ignore[assignment,misc]
    sys.path.insert(0, str(HERE))
    import inprocess

    n = inprocess_n(rest)
    sys.argv = ["inprocess.py", *rest, "--profile", "/dev/null"]
    inprocess.main()
    print(f"{sum(counts.values()) / n:,.0f} Python opcodes a request ({n} requests)")
    show(dict(counts), n, a.top, a.save, a.against)


def show(counts: dict[Key, int], n: int, top: int, save: str | None = None, against: str | None = None) -> None:
    """The `top` functions by opcodes a request (or by their difference from the counts saved in `against`);
    `save` keeps these counts for a later `against` (bench/serve_instructions.py --opcodes lists its own so)."""
    if save:
        Path(save).write_bytes(pickle.dumps((n, counts)))
    if against:
        n0, before = pickle.loads(Path(against).read_bytes())
        print(f"against {against}: {sum(before.values()) / n0:,.0f}")
        keys = sorted(set(before) | set(counts), key=lambda k: -abs(counts.get(k, 0) / n - before.get(k, 0) / n0))
        for k in keys[:top]:
            now = counts.get(k, 0) / n
            print(f"{now - before.get(k, 0) / n0:+9.1f} {now:9.1f}  {k[0]}:{k[1]} {k[2]}")
        return
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{v / n:9.1f}  {k[0]}:{k[1]} {k[2]}")


def inprocess_n(args: list[str]) -> int:
    """The measured requests inprocess.py will send (its `-n`, 2000 unless given)."""
    for i, x in enumerate(args):
        if x == "-n" and i + 1 < len(args):
            return int(args[i + 1])
        if x.startswith("-n") and x[2:].isdigit():
            return int(x[2:])
    return 2000


if __name__ == "__main__":
    main()
