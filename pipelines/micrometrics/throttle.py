"""Client-side leaky bucket that paces requests so the server never has to answer 429.

The server's bucket (burst 10, leaking 1 token/s by default) is mirrored here and corrected
from the ``RateLimit-*`` headers of every response, so a steady sync runs at exactly the rate
the server allows and provokes no 429. Time and sleep are injected so tests run without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from . import cancel

# The API's published defaults: 10 tokens, leaking 1 per second.
DEFAULT_RATE, DEFAULT_BURST = 1.0, 10
# Seconds a request may reach the server later than the instant its token was booked for (a
# thread descheduled between booking and sending, on a loaded machine). The server counts
# arrivals: a late arrival leaks later, so its bucket can hold up to this many seconds' worth of
# tokens more than the mirror. That much of the burst is kept free (at least one token is
# always usable). Measured: on a loaded 2-core machine, 20/s with 4 threads saw a 429 without it.
DEPARTURE_SKEW = 0.25


def header_float(headers: Mapping[str, str], name: str) -> float | None:
    """A header parsed as a float, or None when absent or not a number."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


class LeakyBucket:
    """Thread-safe mirror of the server's leaky bucket.

    ``acquire()`` reserves a token (blocking until one fits) before a request goes out,
    ``departing()`` says it goes, ``observe()`` adopts the server's view after a response,
    ``settle()`` ends the attempt (answered or not); ``hold()`` blocks everyone for the time
    a 429 asked for. A request that got no answer keeps its token (the server may
    have counted it).

    Args:
        rate: Tokens that leak per second (requests per second in steady state).
        burst: Bucket capacity (requests that may go out back to back).
        clock: Monotonic time source in seconds.
        sleep: Called with the seconds to wait (by default cut short, raising
            ``cancel.Cancelled``, when the thread's walk is stopped).
        skew: Seconds of departure delay absorbed by keeping ``skew * rate`` tokens of the
            burst free (see ``DEPARTURE_SKEW``); 0 uses the whole burst.
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = cancel.sleep,
        skew: float = DEPARTURE_SKEW,
    ) -> None:
        if rate <= 0 or burst < 1 or skew < 0:
            raise ValueError("rate must be > 0, burst >= 1 and skew >= 0")
        self.skew = skew
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._level = 0.0  # tokens in the bucket at self._stamp, reservations included
        self._stamp = clock()
        self._booked = 0  # tokens booked so far; each thread remembers its last one
        self._sent = 0  # requests gone out so far, in the order they went
        self._unanswered: set[int] = set()  # departures (by order) whose answer is not in
        self._adopted = 0  # the request (sent, or booked) whose answer was adopted last
        self._mine = threading.local()  # this thread's last booking and departure

    def _usable(self) -> float:
        """The part of the burst this mirror lets fill: all of it but ``skew`` seconds' worth."""
        return self.burst - min(self.burst - 1.0, self.skew * self.rate)

    def _leak(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._stamp) * self.rate)
        self._stamp = now

    def now(self) -> float:
        """The bucket's clock (monotonic seconds; virtual in tests)."""
        return self._clock()

    def until_free(self) -> float:
        """Seconds until a token fits, booking none (``inflight``: the request that should
        have it is known only when it frees)."""
        with self._lock:
            self._leak(self._clock())
            return max(0.0, (self._level + 1.0 - self._usable()) / self.rate)

    def pause(self, seconds: float) -> None:
        """Sleeps ``seconds`` as the bucket's own waits do (on its clock; cut short, raising
        ``cancel.Cancelled``, when the thread's walk is stopped)."""
        self._sleep(seconds)

    def acquire(self) -> float:
        """Reserve one token, sleeping until it fits. Returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._leak(now)
            wait = max(0.0, (self._level + 1.0 - self._usable()) / self.rate)
            # The token is booked now so concurrent callers queue behind it.
            self._level += 1.0
            self._booked += 1
            self._mine.booking = self._booked
            self._mine.due = now + wait
            self._mine.sent = None
        if wait > 0:
            try:
                self._sleep(wait)
            except cancel.Cancelled:
                # Never sent: counted as gone (and answered) so that no later answer counts
                # it as booked and not sent yet; its token stays in the level, leaking away.
                self.departing()
                self.settle()
                raise
        return wait

    def departing(self) -> None:
        """This thread's booked request goes out now (the session calls it as soon as the
        token is booked, so that every booking departs even if signing then fails). The
        server counts requests in the order they reach it: this order, give or take threads
        racing on the way (``observe`` adds those that may have been overtaken)."""
        with self._lock:
            self._sent += 1
            self._mine.sent = self._sent
            self._mine.sent_at = self._clock()
            self._unanswered.add(self._sent)

    def settle(self) -> None:
        """This thread's attempt is over (answered or failed): it is no longer added to the
        answers of requests that went out after it. (Had it reached the server after one of
        them, and that answer is adopted after this settle, the level misses it by one: a
        gap only ``DEPARTURE_SKEW``'s free part of the burst covers.)"""
        with self._lock:
            self._unanswered.discard(getattr(self._mine, "sent", None))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adopt the server's view from ``RateLimit-Rate`` and ``RateLimit-Burst-Remaining``.

        The server judges a request on arrival (as a gateway does) and answers after its
        latency, so its ``remaining`` is its bucket when this thread's request reached it,
        taken as the instant it went out, and leaked since (taken as of the answer, the bucket
        looked a latency's worth of leak fuller: at 1 request/s and 1.5 s latency, 2-3 tokens
        of the burst never used, 2-3 s on every sync). Added to it: the requests that went
        out after this one or are booked and not sent yet, and those that went out before it
        and are still unanswered, since threads race on the way and may have reached the
        server after it. (Counting only the requests booked after it, as this mirror did for
        a while, 300 surveys on a virtual clock, where threads race most, drew 30-80 429s a
        sync; 3-15 so.) A request whose departure was not reported (``departing``) counts as
        gone out when its token was due. The server floors ``remaining``, so the level is
        never underestimated for it. The answer to a request that went out before one whose
        answer was already adopted is older news: ignored.
        """
        with self._lock:
            rate = header_float(headers, "RateLimit-Rate")
            if rate:
                self.rate = rate
            remaining = header_float(headers, "RateLimit-Burst-Remaining")
            now = self._clock()
            overtaken = 0  # sent before this one, unanswered: they may have reached it later
            if getattr(self._mine, "sent", None) is not None:
                order, sent = self._mine.sent, self._mine.sent_at
                overtaken = sum(1 for other in self._unanswered if other < order)
            else:
                order = getattr(self._mine, "booking", self._booked)
                sent = min(getattr(self._mine, "due", now), now)
            if remaining is None or order < self._adopted:
                return
            self._adopted = order
            self.burst = max(self.burst, remaining + 1.0)
            self._leak(now)
            at_arrival = self.burst - remaining
            self._level = (max(0.0, at_arrival - (now - sent) * self.rate)
                           + (self._booked - order) + overtaken)

    def hold(self, seconds: float) -> None:
        """After a 429: make the next token available only ``seconds`` from now."""
        with self._lock:
            self._leak(self._clock())
            self._level = max(self._level, self._usable() - 1.0 + seconds * self.rate)
