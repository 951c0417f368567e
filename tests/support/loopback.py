"""The HTTP server class every fake receiver in the tests listens with."""

from __future__ import annotations

from http.server import ThreadingHTTPServer


class LoopbackServer(ThreadingHTTPServer):
    """A threading server whose listen backlog takes a concurrent delivery batch.

    The stdlib default of 5 drops the SYNs of a larger batch, and each dropped one costs the client a 1 s
    retransmit.
    """

    request_queue_size = 128
    daemon_threads = True
    block_on_close = False
