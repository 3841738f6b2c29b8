"""`make run` is private by default: its web process (the Procfile's line, in the environment the
launcher gives it) listens on loopback only, and the paper account's api secret is the instance's
own, so a postback signed with the old fixed "paper-secret" is refused. Only loopback traffic:
what listens where is read from /proc/net, never probed from outside."""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import uuid
from pathlib import Path

from honcho.environ import parse_procfile

from app.core.db import new_session, session_scope
from app.models import Account, Order
from launcher.instance import fill_in_defaults, paper_account
from tests.support.ports import free_port
from tests.support.private_database import private_database
from tests.support.processes import PROJECT_ROOT, ManagedProcess
from tests.support.waiting import http_status

OLD_FIXED_SECRET = "paper-secret"


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def test_make_runs_web_process_listens_on_loopback_only(db_schema, tmp_path, monkeypatch):
    monkeypatch.delenv("WEB_HOST", raising=False)  # the operator set none
    environ = {**os.environ, "PORT": str(free_port())}
    fill_in_defaults(environ, tmp_path)
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"  # as the launcher does
    environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    web_line = parse_procfile((PROJECT_ROOT / "Procfile").read_text()).processes["web"]
    web = ManagedProcess("make-run-web", ["/bin/sh", "-c", f"exec {web_line}"], env=environ, own_group=True)
    try:
        web.start()
        port = int(environ["PORT"])
        web.wait_until(lambda: http_status(f"http://127.0.0.1:{port}/health"), 60, "/health answering",
                       until=lambda status: status in (200, 503))
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        web.stop()


def signed_postback(order: Order, secret: str) -> dict:
    timestamp = "2026-01-05 10:00:00"
    checksum = hashlib.sha256(f"{order.broker_order_id}{timestamp}{secret}".encode()).hexdigest()
    return {"order_id": order.broker_order_id, "order_timestamp": timestamp, "checksum": checksum,
            "status": "COMPLETE", "tag": order.tag, "filled_quantity": order.quantity, "average_price": 101.5,
            "quantity": order.quantity, "exchange": order.exchange, "tradingsymbol": order.tradingsymbol}


def test_a_postback_signed_with_the_old_fixed_paper_secret_is_refused(db_schema, client, tmp_path, monkeypatch):
    import launcher.__main__ as launcher

    monkeypatch.setattr(launcher, "paper_account", lambda: paper_account(tmp_path))
    monkeypatch.setenv("PAPER_BROKER", "1")
    with private_database():
        with session_scope() as session:  # what an older `make run` registered
            from app import accounts as account_service

            account_service.add_account(session, "primary", "paper-primary", OLD_FIXED_SECRET, "paper-token")
        launcher.prepare_database()  # this `make run`: the instance's own secret replaces it
        order = Order(account_id="primary", tag=uuid.uuid4().hex[:20], broker_order_id=uuid.uuid4().hex,
                      status="OPEN", exchange="NFO", tradingsymbol="NIFTYTEST", transaction_type="BUY",
                      quantity=75, product="NRML", order_type="LIMIT", price=100)
        with session_scope() as session:
            session.add(order)

        forged = client.post("/postback/kite", json=signed_postback(order, OLD_FIXED_SECRET))
        assert forged.status_code == 401
        with new_session() as session:
            assert session.get(Order, order.id).status == "OPEN"
            assert session.get(Account, "primary").api_key == "paper-primary"

        # No broker holds this order: its history, read to confirm a final status, is the postback's own.
        from app.orders import postback_verification

        claim = signed_postback(order, paper_account(tmp_path)["api_secret"])
        monkeypatch.setattr(postback_verification, "broker_record", lambda account_id, broker_order_id: claim)
        genuine = client.post("/postback/kite", json=claim)
        assert genuine.status_code == 200, genuine.get_json()
        with new_session() as session:
            assert session.get(Order, order.id).status == "COMPLETE"
