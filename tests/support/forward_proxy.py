"""A small forwarding HTTP proxy in a thread: the "small host with the account's static IP" of the
egress tests. It listens on 127.0.0.1, demands Basic proxy credentials, connects to the target from
another loopback address (so the paper broker sees that address), and records every request it
forwarded. Plain-HTTP targets only (the paper broker), as an HTTP proxy receives them:
absolute-form request lines over keep-alive connections.
"""
from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}


class ForwardProxy:
    def __init__(self, source_ip: str, user: str, password: str) -> None:
        self.source_ip = source_ip
        self.expected_authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.forwarded: list[dict] = []   # {"method", "path", "api_key"} of each forwarded request
        self.refused = 0                  # requests without the right credentials (answered 407)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def start(self) -> "ForwardProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests_of(self, api_key: str) -> list[tuple[str, str]]:
        with self._lock:
            return [(r["method"], r["path"]) for r in self.forwarded if r["api_key"] == api_key]

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as requests uses a proxy

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Proxy-Authorization") != proxy.expected_authorization:
                    with proxy._lock:
                        proxy.refused += 1
                    self._answer(407, [("Proxy-Authenticate", 'Basic realm="egress"')], b"")
                    return
                target = urlsplit(self.path)
                authorization = self.headers.get("Authorization", "")
                with proxy._lock:
                    proxy.forwarded.append({"method": self.command, "path": target.path,
                                            "api_key": authorization.removeprefix("token ").split(":")[0]})
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=15,
                                                      source_address=(proxy.source_ip, 0))
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    path = target.path + (f"?{target.query}" if target.query else "")
                    upstream.request(self.command, path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                    self._answer(response.status, kept, payload)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args):
                pass

        return Handler
