"""v6.1's ``Profile`` and ``Timeout`` context managers (re-exported by ``utils.general``)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any

from utils.general import LOGGER


class Profile(contextlib.ContextDecorator):
    """Context manager / decorator that logs ``Profile results: <seconds:.5f>s`` for its block.

    The duration is also kept in ``dt`` (seconds) for callers that want the number.
    """

    def __init__(self) -> None:
        self.start = 0.0
        self.dt = 0.0

    def __enter__(self) -> "Profile":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.dt = time.perf_counter() - self.start
        LOGGER.info(f"Profile results: {self.dt:.5f}s")


class Timeout(contextlib.ContextDecorator):
    """Context manager / decorator that interrupts its block after ``seconds`` with ``TimeoutError(timeout_msg)``.

    Uses SIGALRM (a real-time interval timer, so fractions of a second work), so it only acts in the main thread
    of a POSIX process; elsewhere (Windows, worker threads) the block runs unlimited and a warning says so. With
    ``suppress_timeout_errors`` (default) the TimeoutError is swallowed and execution continues after the block.
    """

    def __init__(self, seconds: float, *, timeout_msg: str = "", suppress_timeout_errors: bool = True) -> None:
        self.seconds = float(seconds)
        self.timeout_message = timeout_msg
        self.suppress = bool(suppress_timeout_errors)
        self._old_handler: Any = None
        self._armed = False

    def _timeout_handler(self, signum: int, frame: Any) -> None:
        """SIGALRM handler: raise the timeout."""
        raise TimeoutError(self.timeout_message)

    def __enter__(self) -> "Timeout":
        if hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGALRM, self._timeout_handler)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self._armed = True
        else:
            LOGGER.warning(f"WARNING: Timeout({self.seconds:g}) not enforced: SIGALRM needs the main thread of a "
                           f"POSIX process")
        return self

    def __exit__(self, exc_type: type | None, exc_val: BaseException | None, exc_tb: Any) -> bool:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)  # cancel a timer that has not fired
            signal.signal(signal.SIGALRM, signal.SIG_DFL if self._old_handler is None else self._old_handler)
            self._armed = False
        return bool(self.suppress and exc_type is TimeoutError)
