"""What `make run` makes up for an instance (launcher/instance.py): loopback listeners unless the
operator says otherwise, and secrets of its own — a CREDENTIALS_KEY and the paper account's api
secret — made once, readable by their owner only. And gunicorn's bind: every interface by default
(a platform's $PORT), WEB_HOST when set."""
from __future__ import annotations

import runpy
import stat
from pathlib import Path

from cryptography.fernet import Fernet

from app.core.config import parse_credentials_keys
from launcher.instance import fill_in_defaults, local_url, paper_account

GUNICORN_CONF = Path(__file__).resolve().parents[3] / "gunicorn.conf.py"


def owner_only(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_listeners_default_to_loopback_and_a_credentials_key_is_made_once(tmp_path):
    environ: dict[str, str] = {"FLOWER_ADDRESS": ""}
    notes = fill_in_defaults(environ, tmp_path)
    assert {environ[name] for name in ("WEB_HOST", "STREAM_METRICS_HOST", "FLOWER_ADDRESS")} == {"127.0.0.1"}
    key = environ["CREDENTIALS_KEY"]
    assert parse_credentials_keys(key) == (key,)
    assert owner_only(tmp_path / "credentials.key") and "credentials.key" in notes[0]

    again: dict[str, str] = {}
    fill_in_defaults(again, tmp_path)
    assert again["CREDENTIALS_KEY"] == key  # a restart still reads what it stored


def test_what_the_operator_set_is_kept(tmp_path):
    own_key = Fernet.generate_key().decode()
    environ = {"WEB_HOST": "0.0.0.0", "CREDENTIALS_KEY": own_key, "PORT": "8000"}
    assert fill_in_defaults(environ, tmp_path) == []
    assert environ["WEB_HOST"] == "0.0.0.0" and environ["CREDENTIALS_KEY"] == own_key and environ["PORT"] == "8000"
    assert environ["STREAM_METRICS_HOST"] == "127.0.0.1"
    assert not (tmp_path / "credentials.key").exists()


def test_the_paper_secret_is_the_instances_own(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    secret = paper_account(first)["api_secret"]
    assert secret != "paper-secret" and len(secret) >= 32
    assert owner_only(first / "paper-secret")
    assert paper_account(first)["api_secret"] == secret          # kept across restarts
    assert paper_account(second)["api_secret"] != secret         # not shared with another instance


def test_the_urls_it_prints_reach_the_listener():
    assert local_url("127.0.0.1", "5000") == "http://127.0.0.1:5000"
    assert local_url("0.0.0.0", "5000") == "http://127.0.0.1:5000"
    assert local_url("::1", "5000") == "http://[::1]:5000"


def gunicorn_bind(monkeypatch, tmp_path, **environ) -> str:
    monkeypatch.delenv("WEB_HOST", raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the file would make one otherwise
    monkeypatch.setenv("PORT", "5123")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))["bind"]


def test_gunicorn_binds_every_interface_unless_web_host_says_otherwise(monkeypatch, tmp_path):
    assert gunicorn_bind(monkeypatch, tmp_path) == "0.0.0.0:5123"
    assert gunicorn_bind(monkeypatch, tmp_path, WEB_HOST="127.0.0.1") == "127.0.0.1:5123"
    assert gunicorn_bind(monkeypatch, tmp_path, WEB_HOST="::1") == "[::1]:5123"
