"""A tiny HTTP server on 127.0.0.1 for download tests: serves given bytes, or breaks off mid-file."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        broken = self.path.startswith("/broken/")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if broken else body)
        if broken:  # close the connection halfway through the promised length
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class LocalServer:
    """Serve ``files`` (URL path -> bytes) on an ephemeral loopback port, for the duration of a ``with``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        handler = type("Handler", (_Handler,), {"files": files})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll keeps shutdown (which waits for the next poll) from costing each test half a second.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
