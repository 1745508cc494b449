"""An HTTP server (http.server or werkzeug) serving from a daemon thread."""

from __future__ import annotations

import threading
from typing import Any


class ServerThread:
    def __init__(self, server: Any, name: str):
        self.server = server
        # A short poll interval: stopping waits at most that long for the loop to notice.
        self.thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name,
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
