# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An application whose health page is an HTML login page (200, text/html), not JSON, served on loopback.

``/login`` is the page; any other path redirects to it (302), as a login-protected application does.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import typing as t

LOGIN_PAGE = b"<!doctype html><html><head><title>Sign in</title></head><body><form>Log in</form></body></html>"


class _LoginPage(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        """Keep the test output quiet."""

    def do_GET(self) -> None:  # pylint: disable=invalid-name
        status, body = (200, LOGIN_PAGE) if self.path == "/login" else (302, b"")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if status == 302:
            self.send_header("Location", "/login")
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def login_page_server() -> t.Iterator[str]:
    """Serve the login page on 127.0.0.1 (a real HTTP server in a thread of this process); yield its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LoginPage)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
