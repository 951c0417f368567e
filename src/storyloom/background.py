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
    Idle-aware: each wait that ends without a wake-up doubles the next one, up to `max_idle_interval`
    (work in this process wakes the loop; the poll only catches other processes' work), and a wake-up or
    a pass that calls `busy()` goes back to `interval()`. `next_due()` caps a wait at a known deadline.
    """

    thread_name = "storyloom-loop"
    wake_channel: str | None = None
    stop_timeout = 5.0
    max_idle_interval = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle_waits = 0

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

    def busy(self) -> None:
        """The pass found work: poll at `interval()` again."""
        self._idle_waits = 0

    def next_due(self) -> float | None:
        """Seconds until work this loop already knows of falls due (a timer), if any."""
        return None

    def idle_wait(self) -> float:
        """How long to wait after a pass that left nothing due at once."""
        base = self.interval()
        wait = min(max(base, self.max_idle_interval), base * 2**self._idle_waits)
        due = self.next_due()
        return max(0.0, min(wait, due)) if due is not None else wait

    def waited(self, *, woken: bool) -> None:
        """A wait ended: by a wake-up (back to `interval()`) or by its timeout (wait longer next time)."""
        self._idle_waits = 0 if woken else min(self._idle_waits + 1, 16)

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
                self.waited(woken=wait(self.idle_wait()))
