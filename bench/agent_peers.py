#!/usr/bin/env python3
"""CPU per request of a coding agent's turn (bench/agent_turn.py, 64 KB) and of a two-message request, through
Shenron (as a user runs it: the ledger, metrics and an access log to a file), through TensorZero's and NeMo
Switchyard's Rust gateways, and through nginx's proxy_pass (the floor: it reads nothing of the body), in one
run. A benchmark, not a test: it prints what it measured and judges nothing.

    python3 bench/agent_peers.py --shenron .venv/bin/python --anchors ANCHORS [--dur 4]
    python3 bench/agent_peers.py --shenron before=/tmp/v1/bin/python --shenron after=.venv/bin/python ...

`--dialects` also sends Shenron the same turn as Claude Code sends it to /v1/messages and as Codex sends it to
/v1/responses (`bench/agent_turn.py --dialect`; the peers speak chat only here); `--no-peers` measures the
Shenron builds alone.

ANCHORS: a folder with a venv of the gateways (as for ../shared/bench/peers.py), e.g. made by
    python3 -m venv ANCHORS/venv && ANCHORS/venv/bin/pip install tensorzero==2026.6.0 nemo-switchyard==0.3.0
Every target answers from one upstream, ../shared/bench/stub_backend.py; the gateway and the upstream run on
core 1, wrk on core 0 (1 connection, then 16). CPU is the gateway's process, from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT.parent / "shared" / "bench" / "stub_backend.py"
sys.path.insert(0, str(ROOT / "bench"))

from agent_turn import messages, responses, turn  # noqa: E402

SMALL = {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "ping"}],
         "max_tokens": 32}
LUA = """
local f = io.open(os.getenv("W_BODY_FILE"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "application/json"
for k, v in string.gmatch(os.getenv("W_HEADERS") or "", "([^|=]+)=([^|]*)") do wrk.headers[k] = v end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", "1", *cmd], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})


def ready(port: int, path: str, body: bytes, headers: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("not ready")


def wrk(port: int, path: str, body_file: Path, headers: dict[str, str], conns: int, dur: int, lua: Path) -> int:
    env = {**os.environ, "W_BODY_FILE": str(body_file), "W_HEADERS": "|".join(f"{k}={v}" for k, v in headers.items())}
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{dur}s", "-s", str(lua),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, env=env, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"errors under load: {out}")
    return int(next(line for line in out.splitlines() if "requests in" in line).split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--shenron", required=True, action="append",
                    help="the python of a venv with shenron installed, or LABEL=PYTHON; again for another build")
    ap.add_argument("--anchors",
                    help="a folder with venv/ holding tensorzero and nemo-switchyard (not needed with --no-peers)")
    ap.add_argument("--dur", type=int, default=4, help="seconds of load per measurement")
    ap.add_argument("--dialects", action="store_true",
                    help="Shenron also gets the turn in the Messages and Responses dialects")
    ap.add_argument("--no-peers", action="store_true",
                    help="only the Shenron builds (no nginx, TensorZero, Switchyard)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agent-peers-"))
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    uport = free_port()
    up = f"http://127.0.0.1:{uport}/v1"
    stub = start([sys.executable, str(STUB), "--port", str(uport), "--tokens", "8"], tmp / "stub.log")
    anchors = Path(a.anchors or ".") / "venv" / "bin" / "python"

    def shenron(python: str, label: str) -> Callable[[int], tuple[subprocess.Popen[bytes], str, str, dict[str, str]]]:
        def run(port: int) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str]]:
            cfg = tmp / f"{label}.toml"
            cfg.write_text(f'[server]\naccess-log = "{tmp / label}.log"\n[backends.bench]\nurl = "{up}"\n'
                           f'model = "mock"\n')
            return start([str(Path(python).with_name("shenron")), "serve", "--config", str(cfg), "--port", str(port)],
                         tmp / f"{label}.out", {"XDG_DATA_HOME": str(tmp / label)}), "/v1/chat/completions", "bench", {}
        return run

    def tensorzero(port: int) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str]]:
        (tmp / "tz.toml").write_text(f'[models.mock]\nrouting = ["mock"]\n[models.mock.providers.mock]\n'
                                     f'type = "openai"\nmodel_name = "mock"\napi_base = "{up}/"\n'
                                     f'api_key_location = "none"\n')
        (tmp / "tz.py").write_text(textwrap.dedent(f'''
            import time, tensorzero
            gw = tensorzero._start_http_gateway(config_file="{tmp}/tz.toml", clickhouse_url=None,
                postgres_url=None, valkey_url=None, async_setup=False)
            print(gw.base_url, flush=True)
            while True: time.sleep(3600)
        '''))
        p = start([str(anchors), str(tmp / "tz.py")], tmp / "tz.log")
        for _ in range(200):
            if "http" in (tmp / "tz.log").read_text():
                break
            time.sleep(0.1)
        url = next(w for w in (tmp / "tz.log").read_text().split() if w.startswith("http"))
        return p, f"/openai/v1/chat/completions#{url.rsplit(':', 1)[1].split('/')[0]}", \
            "tensorzero::model_name::mock", {}

    def switchyard(port: int) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str]]:
        (tmp / "sy.toml").write_text(f'schema_version = 1\n[llm_clients.mock]\nformat = "openai_chat"\n'
                                     f'base_url = "{up}"\napi_key_env = "MOCK_KEY"\n[targets.m]\nid = "mock"\n'
                                     f'llm_client = "mock"\n[routes.plain]\nid = "plain"\ntype = "passthrough"\n'
                                     f'target = "m"\n')
        (tmp / "sy.py").write_text(textwrap.dedent(f'''
            import time
            from switchyard_rust.server import Server
            with Server("{tmp}/sy.toml", port={port}) as s:
                print(s.base_url, flush=True)
                while True: time.sleep(3600)
        '''))
        return start([str(anchors), str(tmp / "sy.py")], tmp / "sy.log", {"MOCK_KEY": "x", "RUST_LOG": "warn"}), \
            "/v1/chat/completions", "plain", {"authorization": "Bearer x"}

    def nginx(port: int) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str]]:
        conf = (STUB.parent / "nginx-passthrough.conf").read_text().replace("__PORT__", str(port)).replace(
            "__UPSTREAM_PORT__", str(uport))
        (tmp / "nginx").mkdir()
        (tmp / "nginx" / "nginx.conf").write_text(conf)
        return start(["nginx", "-p", f"{tmp}/nginx/", "-e", f"{tmp}/nginx/error.log", "-c",
                      f"{tmp}/nginx/nginx.conf"], tmp / "nginx.log"), "/v1/chat/completions", "mock", {}

    rows = []
    try:
        builds = [s.split("=", 1) if "=" in s else ["shenron", s] for s in a.shenron]
        peers = [] if a.no_peers else [("tensorzero", tensorzero), ("switchyard", switchyard)]
        for name, fn in [*([] if a.no_peers else [("nginx", nginx)]),
                         *((label, shenron(python, label)) for label, python in builds), *peers]:
            port = free_port()
            proc, path, model, headers = fn(port)
            if "#" in path:
                path, p = path.split("#")
                port = int(p)
            try:
                row: dict[str, object] = {"target": name}
                bodies = [("two messages", SMALL, path), ("agent turn", turn(), path)]
                if a.dialects and name in {label for label, _ in builds}:
                    bodies += [("messages turn", messages(turn()), "/v1/messages"),
                               ("responses turn", responses(turn()), "/v1/responses")]
                for body_name, body, path in bodies:
                    data = json.dumps({**body, "model": model}).encode()
                    body_file = tmp / f"{name}-{body_name.replace(' ', '-')}.json"
                    body_file.write_bytes(data)
                    ready(port, path, data, {"content-type": "application/json", **headers}, proc)
                    wrk(port, path, body_file, headers, 4, 2, lua)  # warm
                    for conns in (1, 16):
                        c0 = cpu_s(proc.pid)
                        n = wrk(port, path, body_file, headers, conns, a.dur, lua)
                        row[f"{body_name} c={conns}"] = (cpu_s(proc.pid) - c0) * 1000 / n
                rows.append(row)
                print(json.dumps(row), flush=True)
            finally:
                proc.terminate()
                proc.wait()
    finally:
        stub.terminate()
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "target"))
    tz = next((r for r in rows if r["target"] == "tensorzero"), None)
    print("\nCPU ms per request (x TensorZero in this run)\n")
    print("| target | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for r in rows:
        cells = [("-" if k not in r else f"{r[k]:.3f}" + (f" ({r[k] / tz[k]:.2f}x)"  # type: ignore[operator]
                                                         if tz and r is not tz and k in tz else ""))
                 for k in keys]
        print(f"| {r['target']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
