"""llama.cpp that crashes on its CPU (the AMX build): the demo and the real-model tests say why and how
to rebuild, and .ci/run's build is one that runs everywhere."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import demo
from proxy.llamacpp import PORTABLE_CMAKE_ARGS, REBUILD, built_with_amx, why_it_died
from tests.procs import ROOT, free_port

AMX_LOG = ("llama_model_load: ...\nload_tensors: AMX model buffer size = 52.5 MiB\n"
           "amx repack tensor blk.0.attn_q.weight of type q4_1\n")

# A model server that starts as llama.cpp's does, then dies as the AMX build does on its first completion.
DYING_SERVER = r'''
import json, os, resource, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "smol", "object": "model"}]}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        sys.stderr.write("amx repack tensor blk.0.attn_q.weight of type q4_1\n"); sys.stderr.flush()
        signal.signal(signal.SIGILL, signal.SIG_DFL); os.kill(os.getpid(), signal.SIGILL)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def test_the_amx_crash_is_named_with_the_rebuild_that_fixes_it() -> None:
    said = why_it_died(-4, AMX_LOG, amx_cpu=True, features="CPU : AVX2 = 1 | AMX_INT8 = 1 |")
    assert "SIGILL" in said and "Intel AMX" in said and REBUILD in said
    assert "--no-cache-dir" in REBUILD and "-DGGML_AMX_INT8=OFF" in REBUILD and "-DGGML_NATIVE=OFF" in REBUILD
    assert "amx repack tensor" in said, "the end of the server's log is shown"
    shell = why_it_died(132, "general protection fault", amx_cpu=False, features="")
    assert "SIGILL" in shell and REBUILD in shell


def test_a_server_that_stopped_without_crashing_is_not_told_to_rebuild() -> None:
    said = why_it_died(1, "error: address already in use", amx_cpu=True, features="AMX_INT8 = 1")
    assert "exit status 1" in said and "address already in use" in said and REBUILD not in said


def test_the_build_features_say_whether_amx_was_compiled_in() -> None:
    assert built_with_amx("CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 |")
    assert not built_with_amx("CPU : SSE3 = 1 | AVX2 = 1 | FMA = 1 | REPACK = 1 |")


@pytest.mark.integration
def test_shenron_demo_says_the_model_server_crashed_and_exits_non_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "dying_server.py"
    script.write_text(DYING_SERVER)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.setattr(demo, "model_file", lambda: tmp_path / "model.gguf")
    monkeypatch.setattr(demo, "model_server", lambda model, port: [sys.executable, str(script), str(port)])
    code = demo.run(argparse.Namespace(port=free_port(), exit=True))
    out, err = capsys.readouterr()
    assert code == 1
    assert "crashed (exit status -4 (SIGILL))" in err and PORTABLE_CMAKE_ARGS in err
    assert "no virtual model answered" in err
    assert "Shenron is running" not in out and "connection refused" not in (out + err).lower()


def test_ci_builds_llama_cpp_for_every_cpu_and_the_readme_says_so() -> None:
    script = (ROOT / ".ci" / "llama-cpp-python").read_text()
    assert f'FLAGS="{PORTABLE_CMAKE_ARGS}"' in script and "--no-cache-dir" in script
    run = (ROOT / ".ci" / "run").read_text()
    assert run.index(".ci/llama-cpp-python") < run.index("pip install -e '.[test]'")
    readme = (ROOT / "README.md").read_text()
    assert readme.count("bash .ci/llama-cpp-python .venv") >= 2, "the test and demo installs build it portably"


@pytest.mark.integration
def test_the_installed_llama_cpp_has_no_amx_compiled_in() -> None:
    """The build .ci/run installs: without AMX, so the real-model tests run on CPUs with and without it."""
    pytest.importorskip("llama_cpp")
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "CPU" in done.stdout
    assert not built_with_amx(done.stdout), f"built with AMX; rebuild: {REBUILD}"
