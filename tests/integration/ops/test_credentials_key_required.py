"""Outside `make run`, a process that reads stored secrets does not start without CREDENTIALS_KEY:
the web (the Procfile's gunicorn line), the worker, the stream and the `flask` CLI each stop at
start-up saying how to make one — instead of each host making up a key of its own that no other
host can read with."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from honcho.environ import parse_procfile

from app.core.config import CREATE_CREDENTIALS_KEY
from tests.support.ports import free_port
from tests.support.processes import PROJECT_ROOT


def test_processes_without_credentials_key_stop_at_start_saying_how_to_make_one(test_env, tmp_path):
    procfile = parse_procfile((PROJECT_ROOT / "Procfile").read_text()).processes
    environ = {name: value for name, value in os.environ.items() if name != "CREDENTIALS_KEY"}
    environ.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}",
                   PORT=str(free_port()), WEB_HOST="127.0.0.1", WEB_CONCURRENCY="1", WORKER_CONCURRENCY="1",
                   STREAM_METRICS_PORT="0", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    commands = {"web": procfile["web"], "worker": procfile["worker"], "stream": procfile["stream"],
                "flask": "flask --app wsgi accounts list"}
    running = {name: subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], cwd=PROJECT_ROOT, env=environ,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, start_new_session=True)
               for name, command in commands.items()}
    outputs = {}
    try:
        for name, process in running.items():
            outputs[name] = (process.communicate(timeout=90)[0], process.returncode)
    finally:
        for process in running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
    for name, (output, returncode) in outputs.items():
        assert returncode != 0, f"{name} started without CREDENTIALS_KEY:\n{output[-2000:]}"
        assert "CREDENTIALS_KEY is not set" in output and CREATE_CREDENTIALS_KEY in output, (name, output[-2000:])
