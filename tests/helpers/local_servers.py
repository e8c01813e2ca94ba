"""A scripted HTTP server on a free local port, run in a thread for the length of a test."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps its access log out of the test output."""

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # connections a scripted server drops or resets on purpose are not errors worth printing


def start(handler) -> tuple[str, callable]:
    """(``http://127.0.0.1:PORT``, stop): ``handler`` answers until ``stop()``."""
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)

    return f"http://127.0.0.1:{httpd.server_address[1]}", stop
