"""Start the paper broker as a subprocess for tests and benchmarks.

    with PaperBroker(seed=7, tick_rate=5, postback_url="http://127.0.0.1:9999/pb") as broker:
        kite = KiteConnect("key", access_token="token", root=broker.root)
        ticker = KiteTicker("key", "token", root=broker.ws_root)
        broker.set_faults(reject_next=1)

The broker binds port 0 and announces the port it got, so there is no race for a free port.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
_ANNOUNCE = re.compile(r"listening on http://([\d.]+):(\d+)")


class PaperBroker:
    def __init__(self, seed: int = 1, tick_rate: float | None = None, postback_url: str | None = None,
                 strict_auth: bool = False, api_secret: str | None = None, accounts: dict | None = None,
                 rate_limits: bool = True, frozen: bool = False, faults: dict | None = None,
                 cash: float | None = None, daily_expiry: bool = True, universe: str = "small",
                 extra_args: list[str] | tuple = (), port: int = 0, startup_timeout: float = 20.0,
                 keep_log: bool = False):
        args = [sys.executable, "-m", "sim", "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed)]
        if tick_rate is not None:
            args += ["--tick-rate", str(tick_rate)]
        if postback_url:
            args += ["--postback-url", postback_url]
        if strict_auth:
            args.append("--strict-auth")
        if api_secret:
            args += ["--api-secret", api_secret]
        for key, value in (accounts or {}).items():
            # value: "SECRET" or ("SECRET", "ACCESS_TOKEN")
            secret, token = (value, "") if isinstance(value, str) else value
            args += ["--account", f"{key}:{secret}:{token}" if token else f"{key}:{secret}"]
        if not rate_limits:
            args.append("--no-rate-limits")
        if frozen:
            args.append("--frozen")
        if cash is not None:
            args += ["--cash", str(cash)]
        if not daily_expiry:
            args.append("--no-daily-expiry")
        if universe != "small":
            args += ["--universe", universe]
        self.args = args + list(extra_args)
        self.startup_timeout = startup_timeout
        self.keep_log = keep_log
        self._initial_faults = faults or {}
        self.process: subprocess.Popen | None = None
        self.root = self.ws_root = ""
        self.port = 0
        self._log = tempfile.NamedTemporaryFile(prefix="paper-broker-", suffix=".log", delete=False)
        self.log_path = self._log.name

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> "PaperBroker":
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(self.args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=self._log, text=True)
        line = self._read_announcement()
        match = _ANNOUNCE.search(line or "")
        if not match:
            self.stop()
            raise RuntimeError(f"paper broker did not start: {line!r}; log: {Path(self.log_path).read_text()}")
        host, self.port = match.group(1), int(match.group(2))
        self.root = f"http://{host}:{self.port}"
        self.ws_root = f"ws://{host}:{self.port}/ws"
        self._wait_until_answering()
        if self._initial_faults:
            self.set_faults(**self._initial_faults)
        return self

    def _read_announcement(self) -> str | None:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        return result[0] if result else None

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                requests.get(self.root + "/_sim/state", timeout=2).raise_for_status()
                return
            except requests.RequestException:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"paper broker not answering; log: {Path(self.log_path).read_text()}")
                time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process and self.process.stdout:
            self.process.stdout.close()
        self._log.close()
        if self.process and self.process.returncode == 0 and not self.keep_log:
            Path(self.log_path).unlink(missing_ok=True)  # a clean exit leaves nothing worth reading

    def __enter__(self) -> "PaperBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- /_sim controls -------------------------------------------------------------------
    def _call(self, method: str, path: str, **kw):
        response = requests.request(method, self.root + path, timeout=10, **kw)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **settings) -> dict:
        return self._call("POST", "/_sim/faults", json=settings)

    def clear_faults(self) -> dict:
        return self._call("DELETE", "/_sim/faults")

    def state(self) -> dict:
        return self._call("GET", "/_sim/state")

    def orders(self, api_key: str) -> list[dict]:
        """Every order the broker holds for the key, including those whose response timed out."""
        return self._call("GET", "/_sim/orders", params={"api_key": api_key})

    def add_account(self, api_key: str, api_secret: str | None = None, access_token: str | None = None,
                    redirect_url: str | None = None, allowed_ips: list[str] | None = None) -> dict:
        """Register (or update) an account. `redirect_url` / `allowed_ips` left None stay as they are;
        "" / [] clear them."""
        body = {"api_key": api_key, "api_secret": api_secret, "access_token": access_token}
        if redirect_url is not None:
            body["redirect_url"] = redirect_url
        if allowed_ips is not None:
            body["allowed_ips"] = list(allowed_ips)
        return self._call("POST", "/_sim/accounts", json=body)

    def login(self, api_key: str, redirect_params: str | None = None) -> str:
        """The Location the login page redirects to (the account needs a redirect_url)."""
        params = {"v": "3", "api_key": api_key}
        if redirect_params is not None:
            params["redirect_params"] = redirect_params
        response = requests.get(self.root + "/connect/login", params=params, allow_redirects=False, timeout=10)
        if response.status_code != 302:
            raise RuntimeError(f"login page answered {response.status_code}: {response.text.strip()}")
        return response.headers["Location"]

    def market(self, tokens: list[int] | tuple = ()) -> dict:
        return self._call("GET", "/_sim/market", params={"tokens": ",".join(map(str, tokens))})

    def set_market(self, **changes) -> dict:
        """frozen=True/False, spot={"NIFTY": 24000.0}, steps=N."""
        return self._call("POST", "/_sim/market", json=changes)

    def settings(self, **changes) -> dict:
        """tick_rate=R, postback_url=URL, rate_limits=bool, now=ISO-8601|None, expire_sessions=True,
        order_limits={"per_second": N, "per_minute": N, "per_day": N}."""
        return self._call("POST", "/_sim/settings", json=changes)
