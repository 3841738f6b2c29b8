"""What `make run` makes up for this instance where the operator set nothing: loopback listeners,
one machine's process counts, and secrets of its own, kept in instance/ readable by its user only
(the development API key, the CREDENTIALS_KEY, the paper account's api secret), so that they
survive restarts and no two instances share one."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable, MutableMapping

from cryptography.fernet import Fernet

INSTANCE = Path(__file__).resolve().parent.parent / "instance"
PAPER_API_KEY, PAPER_ACCESS_TOKEN = "paper-primary", "paper-token"
# Where the processes listen unless the operator set these: this machine only.
LOOPBACK_DEFAULTS = {"WEB_HOST": "127.0.0.1", "STREAM_METRICS_HOST": "127.0.0.1", "FLOWER_ADDRESS": "127.0.0.1"}


def instance_secret(name: str, make: Callable[[], str], directory: Path = INSTANCE) -> str:
    """A secret made once into directory/name, readable by its owner only (from its creation on),
    so it survives restarts."""
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(make())
    return path.read_text().strip()


def dev_api_key(directory: Path = INSTANCE) -> str:
    """A development admin key."""
    return instance_secret("dev-api-key", lambda: f"dev-{secrets.token_hex(16)}", directory)


def paper_account(directory: Path = INSTANCE) -> dict:
    """The paper account's credentials. Its api secret signs the paper broker's postbacks, so it is
    this instance's own: a fixed one would let anyone who reaches the web port forge a postback."""
    return {"api_key": PAPER_API_KEY, "access_token": PAPER_ACCESS_TOKEN,
            "api_secret": instance_secret("paper-secret", lambda: secrets.token_urlsafe(32), directory)}


def fill_in_defaults(environ: MutableMapping[str, str], directory: Path = INSTANCE) -> list[str]:
    """The settings `make run` gives every process it starts, where the operator set none: loopback
    listeners, one machine's process counts, and a CREDENTIALS_KEY kept in directory/credentials.key
    (a process outside `make run` without one refuses to start). Returns what it says about them."""
    notes = []
    for name, value in {**LOOPBACK_DEFAULTS, "PORT": "5000", "WEB_CONCURRENCY": "1", "WORKER_CONCURRENCY": "2",
                        # Beat's schedule beside the database, so two checkouts on one machine don't share it.
                        "CELERY_BEAT_SCHEDULE": str(directory / "celerybeat-schedule")}.items():
        if not environ.get(name, "").strip():
            environ[name] = value
    if not environ.get("CREDENTIALS_KEY", "").strip():
        environ["CREDENTIALS_KEY"] = instance_secret("credentials.key", lambda: Fernet.generate_key().decode(),
                                                     directory)
        notes.append(f"stored secrets are encrypted with {directory / 'credentials.key'} "
                     "(keep it; set CREDENTIALS_KEY to use your own)")
    return notes


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def local_url(host: str, port: str) -> str:
    """How this machine reaches a listener on host:port (one on every interface: through loopback)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
