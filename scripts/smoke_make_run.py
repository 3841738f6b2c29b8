"""`make run` as a new user runs it, from a clean clone: CI's proof of the README's first command.

    python3 scripts/smoke_make_run.py            (CI: .ci/run; standard library only)

Clones the committed project into a temporary folder, runs `make run` there with none of the
service's variables exported (no REDIS_URL, DATABASE_URL, KITE_API_ROOT, API_KEYS: the launcher
must build its own .venv from requirements.txt and start every embedded default) on free ports,
then: waits for /health and a loaded instrument registry, places the README's quickstart order
with the generated key and waits for COMPLETE, opens the dashboard page and its modules and the
API docs page and its files (all from this origin), checks that the run's ports listen on
loopback only, presses Ctrl-C (SIGINT to the foreground process group, as a terminal does) and
checks that no process of the run is left. Any failed step exits 1 after printing the tail of
the launcher's output.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# What a new user has not set; the launcher must fill each in itself.
UNSET = ("REDIS_URL", "DATABASE_URL", "KITE_API_ROOT", "KITE_WS_ROOT", "API_KEYS", "CREDENTIALS_KEY",
         "PAPER_BROKER", "LAUNCH_PROCESSES", "CELERY_BEAT_SCHEDULE", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
INSTALL_AND_START_S = 300  # a cold pip cache; warm, the whole run takes about a minute
STEP_S = 60
STARTED = time.monotonic()


class SmokeFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"[smoke {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, key: str | None = None, body: dict | None = None) -> tuple[int, bytes, str]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["X-API-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def wait_for(what: str, check, timeout_s: float, launcher: subprocess.Popen):
    """Poll `check` until it returns something truthy; fail early if the launcher died."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise SmokeFailure(f"make run exited with {launcher.returncode} while waiting for {what}")
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as exc:  # not up yet: refused, reset, half-written JSON
            last_error = exc
        time.sleep(1)
    raise SmokeFailure(f"timed out after {timeout_s:.0f}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


def clean_environment(ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    venvs = [p for p in (os.environ.get("VIRTUAL_ENV"), str(PROJECT / ".venv")) if p]
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not any(p.startswith(v) for v in venvs))
    env.update({name: str(port) for name, port in ports.items()})
    return env


def processes_of(session_id: int, clone: Path) -> list[str]:
    """Live processes of the run: in its session, or running from the clone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            state, sid = fields[0], int(fields[3])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
        except (OSError, ValueError):
            continue  # exited while we looked
        if state == "Z":
            continue
        if sid == session_id or cwd.startswith(str(clone)) or str(clone) in cmdline:
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


def check_console(log_path: Path, launcher: subprocess.Popen) -> None:
    """The launcher's URLs and key come again once the stack is up; periodic tasks stay quiet."""
    wait_for("the launcher to say it is ready", lambda: "[launcher] ready" in log_path.read_text(errors="replace"),
             STEP_S, launcher)
    noisy = [line for line in log_path.read_text(errors="replace").splitlines()
             if "reconcile_open_orders[" in line or "Sending due task" in line]  # received/succeeded, beat
    if noisy:
        raise SmokeFailure("periodic tasks still log at INFO:\n  " + "\n  ".join(noisy[:5]))
    say("console: the launcher's lines came again when the stack was up; no periodic-task noise")


def check_stack(base: str, clone: Path, launcher: subprocess.Popen) -> None:
    def healthy():
        status, body, _ = http("GET", f"{base}/health")
        return status == 200 and json.loads(body)
    health = wait_for("/health to answer 200", healthy, INSTALL_AND_START_S, launcher)
    say(f"/health answers 200 ({health['status']})")

    key = (clone / "instance" / "dev-api-key").read_text().strip()

    def instruments_loaded():
        checks = json.loads(http("GET", f"{base}/health")[1])["checks"]
        return checks.get("instruments", {}).get("count")
    count = wait_for("the instrument registry to load by itself", instruments_loaded, STEP_S, launcher)
    say(f"instrument registry loaded by itself: {count} instruments")

    def chain():
        status, body, _ = http("GET", f"{base}/option-chain?underlying=NIFTY", key)
        return status == 200 and json.loads(body)
    option_chain = wait_for("the NIFTY option chain", chain, STEP_S, launcher)
    row = next(r for r in option_chain["strikes"] if r["CE"])
    symbol, lot = row["CE"]["tradingsymbol"], row["CE"]["lot_size"]

    status, body, _ = http("POST", f"{base}/accounts/primary/orders", key, {
        "exchange": "NFO", "tradingsymbol": symbol, "transaction_type": "BUY", "quantity": lot,
        "product": "NRML", "order_type": "MARKET"})
    if status not in (200, 201, 202):
        raise SmokeFailure(f"the quickstart order was answered {status}: {body[:300]!r}")
    order_id = json.loads(body)["order_id"]
    say(f"quickstart order {order_id} ({symbol} x {lot}) accepted with {status}")

    def complete():
        order = json.loads(http("GET", f"{base}/orders/{order_id}", key)[1])
        if order["status"] in ("REJECTED", "CANCELLED", "DEAD_LETTER"):
            raise SmokeFailure(f"the quickstart order ended {order['status']}: {order}")
        return order["status"] == "COMPLETE" and order
    order = wait_for(f"order {order_id} to COMPLETE", complete, STEP_S, launcher)
    say(f"order COMPLETE at the paper broker as {order.get('broker_order_id')}")

    status, page, content_type = http("GET", f"{base}/")
    if status != 200 or "text/html" not in content_type:
        raise SmokeFailure(f"the dashboard page answered {status} {content_type}")
    modules = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.decode())
    for path in modules:
        status, _, _ = http("GET", base + path)
        if status != 200:
            raise SmokeFailure(f"the dashboard's {path} answered {status}")
    say(f"dashboard page and its {len(modules)} static files load")

    status, page, _ = http("GET", f"{base}/docs")
    files = re.findall(r'(?:src|href)="([^"]+)"', page.decode())
    if status != 200 or not files:
        raise SmokeFailure(f"the API docs page answered {status} with {len(files)} files")
    for url in (urllib.parse.urljoin(f"{base}/docs", name) for name in files):
        if not url.startswith(base + "/") or http("GET", url)[0] != 200:
            raise SmokeFailure(f"the API docs page's {url} is not served from this origin")
    say(f"API docs page and its {len(files)} files load from this origin")


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (/proc/net/tcp, tcp6)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path("/proc/net", table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                found.add(socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))))
    return found


def check_loopback_only(ports: dict[str, int], launcher: subprocess.Popen) -> None:
    """`make run` is private by default: nothing it starts listens beyond this machine."""
    for name, port in ports.items():
        # The stream listens once its Greeks kernels are compiled: a fresh clone has no numba cache.
        addresses = wait_for(f"{name} {port} to listen", lambda: listening_addresses(port), 2 * STEP_S, launcher)
        if addresses != {"127.0.0.1"}:
            raise SmokeFailure(f"{name} {port} listens on {sorted(addresses)}, not on 127.0.0.1 only")
    say("the web, paper broker, Flower and stream metrics ports listen on 127.0.0.1 only")


def stop_with_ctrl_c(launcher: subprocess.Popen, clone: Path) -> None:
    os.killpg(launcher.pid, signal.SIGINT)
    try:
        launcher.wait(timeout=STEP_S)
    except subprocess.TimeoutExpired:
        raise SmokeFailure(f"make run still running {STEP_S}s after Ctrl-C")
    deadline = time.monotonic() + 10  # children may take a moment to be reaped after make exits
    while (left := processes_of(launcher.pid, clone)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        raise SmokeFailure("processes left after Ctrl-C:\n  " + "\n  ".join(left))
    say(f"Ctrl-C stopped everything (make exited with {launcher.returncode}); no process left")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ticker-smoke-"))
    clone = workdir / "clone"
    log_path = workdir / "make-run.log"
    say(f"cloning {PROJECT} into {clone}")
    subprocess.run(["git", "clone", "--quiet", str(PROJECT), str(clone)], check=True)
    ports = {"PORT": free_port(), "SIM_PORT": free_port(), "FLOWER_PORT": free_port(),
             "STREAM_METRICS_PORT": free_port()}
    base = f"http://127.0.0.1:{ports['PORT']}"
    say(f"make run (ports {ports}), output in {log_path}")
    launcher = None
    try:
        with open(log_path, "wb") as log:
            # A session of its own, like a terminal's foreground job: Ctrl-C goes to the whole group.
            launcher = subprocess.Popen(["make", "run"], cwd=clone, env=clean_environment(ports),
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            check_stack(base, clone, launcher)
            check_console(log_path, launcher)
            check_loopback_only(ports, launcher)
            stop_with_ctrl_c(launcher, clone)
    except (SmokeFailure, OSError, ValueError, KeyError, StopIteration) as exc:
        say(f"FAILED: {type(exc).__name__}: {exc}")
        print("---- last lines of make run's output ----")
        print("\n".join(log_path.read_text(errors="replace").splitlines()[-60:]))
        if launcher is not None:
            for pid in [int(line.split(":")[0]) for line in processes_of(launcher.pid, clone)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return 1
    finally:
        if launcher is not None and launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)
    say("make run smoke passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
