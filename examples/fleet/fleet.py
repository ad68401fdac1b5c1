"""A fleet on one machine: nginx in front of two `shenron serve` replicas over PostgreSQL, Redis and a pool
of model servers. Started by this one script, stopped by Ctrl-C (or SIGTERM); SIGHUP restarts the replicas
one at a time, as a deploy would.

    python examples/fleet/fleet.py                          # two llama.cpp servers on SmolLM2 (demo extra)
    python examples/fleet/fleet.py --servers http://gpu1:8000/v1,http://gpu2:8000/v1 --model qwen2.5

Then point any client at http://127.0.0.1:8080/v1. What each part is for is in README, "Running a fleet".
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from proxy.demo import free_port, wait_ready

CONFIG = """# written by examples/fleet/fleet.py
[server]
drain-s = {drain_s}            # on SIGTERM, /ready says 503 and connections close after each response
health-interval-s = 1

[backends.pool]
urls = [{urls}]
model = "{model}"
gpu = "gpu"                # each server of the pool its own gpu@server slots, shared by both replicas

[gpus.gpu]
vram-gb = 24
max-concurrent = {max_concurrent}

[models.ultra-instinct]
strategy = "single"
members = ["pool"]

[models.agent-lite]
strategy = "council"
members = ["pool", "pool", "pool"]
sample-temperature = 0.7
greedy-first = true

[store]
database-url = "{database_url}"   # one ledger and one set of keys for every replica
redis-url = "{redis_url}"         # GPU slots, breakers, probes, rate limits and the cache, shared
redis-prefix = "{prefix}"
"""

FAIL_TIMEOUT_S = 2
"""How long nginx leaves a replica alone after it refused a connection (nginx's passive health check)."""

NGINX = """# written by examples/fleet/fleet.py
worker_processes 1;
pid {state}/nginx.pid;
error_log {state}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {state}/nginx-access.log;
    client_body_temp_path {state}/nginx-body;
    proxy_temp_path {state}/nginx-proxy;
    fastcgi_temp_path {state}/nginx-fastcgi;
    uwsgi_temp_path {state}/nginx-uwsgi;
    scgi_temp_path {state}/nginx-scgi;
    upstream shenron {{
        least_conn;
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 32m;
        location / {{
            proxy_pass http://shenron;
            proxy_http_version 1.1;
            proxy_set_header Connection "";       # keep-alive to the replicas
            proxy_set_header Host $host;
            proxy_buffering off;                  # streams pass as they come
            proxy_read_timeout 600s;
            # A replica that refuses a connection, or closes one as it stops: the next replica. `non_idempotent`
            # lets nginx resend a POST whose connection broke before any answer (a kept-alive connection
            # closed by a stopping replica at the moment nginx reused it); nothing was answered or billed.
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


def database(url: str) -> None:
    """Create the ledger's database if it is not there (the replicas create the tables)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = Path(args.state or tempfile.mkdtemp(prefix="shenron-fleet-"))
        self.state.mkdir(parents=True, exist_ok=True)
        self.models: list[subprocess.Popen[bytes]] = []
        self.replicas: list[tuple[int, subprocess.Popen[bytes]]] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.shenron = shutil.which("shenron") or str(Path(sys.executable).with_name("shenron"))
        self.restart_asked = False

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.state / log).open("ab")
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def model_servers(self) -> tuple[list[str], str]:
        if self.args.servers:
            return self.args.servers.split(","), self.args.model
        from proxy.demo import model_file

        gguf = model_file()
        if gguf is None:
            raise SystemExit("fleet: no --servers given and SmolLM2 is not installed (the demo extra); "
                             "see README, `shenron demo`")
        urls = []
        for i in range(2):
            port = free_port()
            p = self.spawn([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smol",
                            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"],
                           f"llama-{i}.log")
            self.models.append(p)
            wait_ready(f"http://127.0.0.1:{port}/v1/models", p, f"llama.cpp server {i}", self.state / f"llama-{i}.log")
            urls.append(f"http://127.0.0.1:{port}/v1")
        return urls, "smol"

    def replica(self, port: int) -> subprocess.Popen[bytes]:
        p = self.spawn([self.shenron, "serve", "--port", str(port), "--config", str(self.state / "shenron.toml")],
                       f"replica-{port}.log")
        wait_ready(f"http://127.0.0.1:{port}/ready", p, f"replica on {port}", self.state / f"replica-{port}.log", 60)
        return p

    def up(self) -> str:
        a = self.args
        database(a.database_url)
        urls, model = self.model_servers()
        (self.state / "shenron.toml").write_text(CONFIG.format(
            urls=", ".join(f'"{u}"' for u in urls), model=model, max_concurrent=a.max_concurrent,
            database_url=a.database_url, redis_url=a.redis_url, prefix=a.redis_prefix, drain_s=a.drain_s))
        for _ in range(a.replicas):
            port = free_port()
            self.replicas.append((port, self.replica(port)))
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s;"
                            for p, _ in self.replicas)
        (self.state / "nginx.conf").write_text(NGINX.format(state=self.state, servers=servers, port=a.port))
        self.nginx = self.spawn([a.nginx, "-p", str(self.state), "-c", str(self.state / "nginx.conf"),
                                 "-g", "daemon off;"], "nginx.log")
        base = f"http://127.0.0.1:{a.port}"
        wait_ready(base + "/health", self.nginx, "nginx", self.state / "nginx-error.log")
        return base + "/v1"

    def rolling_restart(self) -> None:
        """One replica at a time: SIGTERM (it drains and finishes), start it again, wait until it is ready and
        nginx has taken it back (its `fail_timeout`, as Kubernetes' minReadySeconds would), then the next."""
        for i, (port, proc) in enumerate(self.replicas):
            print(f"fleet: restarting the replica on {port}", flush=True)
            proc.send_signal(signal.SIGTERM)
            proc.wait(self.args.drain_s + 60)
            self.replicas[i] = (port, self.replica(port))
            time.sleep(FAIL_TIMEOUT_S + 0.5)
        print("fleet: rolling restart done", flush=True)

    def down(self) -> None:
        procs = ([self.nginx] if self.nginx else []) + [p for _, p in self.replicas] + self.models
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if p is self.nginx else signal.SIGTERM)
        for p in procs:
            try:
                p.wait(self.args.drain_s + 30)
            except subprocess.TimeoutExpired:
                p.kill()

    def serve(self) -> int:
        def hup(signum: int, frame: FrameType | None) -> None:
            self.restart_asked = True

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGTERM, stop)
        try:
            base = self.up()
            print(f"fleet ready: {base}  (nginx -> {len(self.replicas)} replicas; state and logs in {self.state}; "
                  f"SIGHUP to pid {os.getpid()} restarts the replicas one by one; Ctrl-C stops all)", flush=True)
            while True:
                time.sleep(0.2)
                if self.restart_asked:
                    self.restart_asked = False
                    self.rolling_restart()
                for port, p in self.replicas:
                    if p.poll() is not None:
                        print(f"fleet: the replica on {port} exited ({p.returncode}); starting it again", flush=True)
                        self.replicas = [(q, self.replica(q)) if q == port else (q, r) for q, r in self.replicas]
        except KeyboardInterrupt:
            return 0
        except RuntimeError as e:  # a part that did not start: say which, with the end of its log
            print(f"fleet: {e}", file=sys.stderr)
            return 1
        finally:
            self.down()
            print("fleet: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--servers", help="model servers of one model, comma separated (default: two llama.cpp servers "
                                      "on SmolLM2, from the demo extra)")
    ap.add_argument("--model", default="smol", help="the model id the servers serve (with --servers)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")
    ap.add_argument("--max-concurrent", type=int, default=2, help="per model server, across every replica")
    ap.add_argument("--drain-s", type=float, default=2.0, help="[server] drain-s of the replicas")
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/shenron_fleet")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--redis-prefix", default="shenron-fleet:")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--state", help="where configs and logs go (default: a new temporary directory)")
    return Fleet(ap.parse_args(argv)).serve()


if __name__ == "__main__":
    sys.exit(main())
