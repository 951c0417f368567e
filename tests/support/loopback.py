"""The HTTP server class every fake receiver in the tests listens with."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class LoopbackServer(ThreadingHTTPServer):
    """A threading server whose listen backlog takes a concurrent delivery batch.

    The stdlib default of 5 drops the SYNs of a larger batch, and each dropped one costs the client a 1 s
    retransmit.
    """

    request_queue_size = 128
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that died mid-connection (a kill -9 test) is expected; anything else is printed."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)
