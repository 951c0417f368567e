"""The background thread every worker loop runs in: start, pass after pass, wake early, stop cleanly."""

from __future__ import annotations

import threading

import structlog

from storyloom import signals

log = structlog.get_logger(__name__)


class BackgroundLoop:
    """Calls `run_pass()` in a daemon thread until stopped; a failing pass is logged and retried.

    Between passes it waits `interval()` seconds, or less when its signals channel is woken by a commit
    that created work for it; a pass that returns True (more is due) is followed at once by the next.
    """

    thread_name = "storyloom-loop"
    wake_channel: str | None = None
    stop_timeout = 5.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.wake_channel is not None:
            signals.wake(self.wake_channel)
        if self._thread is not None:
            self._thread.join(self.stop_timeout)
            self._thread = None
        self.after_stop()

    def run_pass(self) -> bool:
        """One pass; True when more work is due at once."""
        raise NotImplementedError

    def interval(self) -> float:
        return 1.0

    def after_stop(self) -> None:
        """Hand back what the loop held (a lease), so another worker takes over at once."""

    def _run(self) -> None:
        wait = signals.waiter(self.wake_channel) if self.wake_channel else self._stop.wait
        while not self._stop.is_set():
            try:
                more = self.run_pass()
            except Exception:  # the loop must survive a bad pass; the next one retries
                log.exception("background pass failed; retrying", loop=self.thread_name)
                self._stop.wait(max(1.0, self.interval()))
                continue
            if not more:
                wait(self.interval())
