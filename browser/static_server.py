"""The seed frontends' origin, http://localhost:5173: the pages in browser/pages, served as a Vite dev server
would serve an SPA, with no build step and nothing from the internet.

Routes the seeds name without `.html` map to their page (`/broker-callback`, seed 000; `/schwab/callback`,
seed 002); `/config.js` tells the pages where Thor is, as an SPA's build-time API base URL would.
"""

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

PAGES = Path(__file__).resolve().parent / "pages"
PORT = 5173
ORIGIN = f"http://localhost:{PORT}"
ROUTES = {"/": "/index.html", "/broker-callback": "/broker-callback.html", "/schwab/callback": "/schwab-callback.html"}


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args, config: dict, **kwargs):
        self.config = config
        super().__init__(*args, directory=str(PAGES), **kwargs)

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/config.js":
            body = f"window.THOR_CONFIG = {json.dumps(self.config)};\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if parts.path in ROUTES:
            self.path = ROUTES[parts.path] + (f"?{parts.query}" if parts.query else "")
        super().do_GET()

    def end_headers(self):
        # Each test loads the pages as they are on disk.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):
        pass


class StaticServer:
    def __init__(self, *, thor_url: str, port: int = PORT):
        config = {"apiBase": f"{thor_url}/api", "wsBase": thor_url.replace("http", "ws", 1), "agent": "demo"}
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), partial(_Handler, config=config))
        except OSError as error:
            raise RuntimeError(
                f"Port {port} is taken; the browser suite serves the SPA pages there (the origin the demo tenant "
                f"allows): stop whatever listens on it. ({error})"
            ) from error
        self._thread = threading.Thread(target=self._server.serve_forever, name="spa-pages", daemon=True)

    def start(self) -> "StaticServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
