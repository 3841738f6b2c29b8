"""`python -m sim --host 127.0.0.1 --port N [...]`: run the paper broker."""
from __future__ import annotations

import asyncio
import signal
import sys

from .config import parse_args
from .server import serve


def main(argv=None) -> None:
    config = parse_args(argv)

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await serve(config, announce=lambda line: print(line, flush=True))

    try:
        asyncio.run(run())
    except asyncio.CancelledError:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
