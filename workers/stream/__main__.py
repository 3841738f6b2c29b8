"""`python -m workers.stream`: the streaming worker (Procfile `stream`)."""
from __future__ import annotations

import logging
import signal
import sys

from app.core.config import get_settings, require_credentials_key
from app.core.logs import configure_logging
from workers.stream.service import StreamService

log = logging.getLogger("workers.stream")


def main() -> int:
    settings = get_settings()
    require_credentials_key()  # it decrypts the accounts' access tokens: no key, no start
    configure_logging(settings.log_level)
    service = StreamService(settings, metrics_port=settings.stream_metrics_port or None)

    def _stop(signum, _frame):
        log.info("stopping", extra={"signal": signum})
        service.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service.start()
    log.info("stream started", extra={"holder": service.holder_id, "ws_root": settings.kite_ws_root})
    try:
        service.run_forever()
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
