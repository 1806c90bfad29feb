"""Prometheus metrics for `modrwkv serve`, at GET /metrics in the text exposition format (0.0.4).

Counters and histograms are kept here, updated by the HTTP layer (requests, latencies, tokens);
the queue and batch gauges are read from the scheduler when scraped. Written by hand rather than
with prometheus_client: a few dozen lines, and no dependency for a server that may be a bare pip
install.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Callable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; wide enough for a short decode on a GPU and a long generation on a CPU.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
THROUGHPUT_WINDOW_SECONDS = 60.0


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
               for k, v in sorted(labels.items()))
    return "{" + ",".join(escaped) + "}"


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name: str, labels: Mapping[str, str]) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f"{name}_bucket{_labels({**labels, 'le': le})} {running}")
        out.append(f"{name}_sum{_labels(labels)} {self.total}")
        out.append(f"{name}_count{_labels(labels)} {running}")
        return out


class ServerMetrics:
    """What the server counts. Thread-safe; `render` gives the /metrics body."""

    def __init__(self, gauges: Callable[[], Mapping[str, float]] = dict, clock: Callable[[], float] = time.monotonic) -> None:
        """`gauges` is called at each scrape for the current load (queue, running, ...)."""
        self._gauges = gauges
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._latency: dict[str, _Histogram] = {}
        self._first_token: dict[str, _Histogram] = {}
        self._tokens: collections.Counter[str] = collections.Counter()
        self._recent: collections.deque[tuple[float, int]] = collections.deque()  # (time, generated tokens)

    def request_done(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, str(status))] += 1
            self._latency.setdefault(route, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def first_token(self, route: str, seconds: float) -> None:
        """Time from the request's arrival to its first streamed text."""
        with self._lock:
            self._first_token.setdefault(route, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def tokens(self, prompt: int, completion: int) -> None:
        with self._lock:
            self._tokens["prompt"] += prompt
            self._tokens["completion"] += completion
            self._recent.append((self._clock(), completion))

    def tokens_per_second(self) -> float:
        """Generated tokens per second over the last THROUGHPUT_WINDOW_SECONDS."""
        now = self._clock()
        with self._lock:
            while self._recent and self._recent[0][0] < now - THROUGHPUT_WINDOW_SECONDS:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / THROUGHPUT_WINDOW_SECONDS

    def render(self) -> str:
        gauges = dict(self._gauges())
        rate = self.tokens_per_second()
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))

        with self._lock:
            family("modrwkv_requests_total", "counter", "HTTP requests answered, by route and status.")
            for (route, status), n in sorted(self._requests.items()):
                lines.append(f"modrwkv_requests_total{_labels({'route': route, 'status': status})} {n}")
            family("modrwkv_request_latency_seconds", "histogram", "Time to answer a request, by route.")
            for route, histogram in sorted(self._latency.items()):
                lines += histogram.lines("modrwkv_request_latency_seconds", {"route": route})
            family("modrwkv_time_to_first_token_seconds", "histogram",
                   "Time from a streaming request's arrival to its first text, by route.")
            for route, histogram in sorted(self._first_token.items()):
                lines += histogram.lines("modrwkv_time_to_first_token_seconds", {"route": route})
            family("modrwkv_tokens_total", "counter", "Tokens read (prompt) and generated (completion).")
            for kind in ("prompt", "completion"):
                lines.append(f"modrwkv_tokens_total{_labels({'kind': kind})} {self._tokens[kind]}")
        family("modrwkv_generation_tokens_per_second", "gauge",
               f"Generated tokens per second over the last {THROUGHPUT_WINDOW_SECONDS:g} s.")
        lines.append(f"modrwkv_generation_tokens_per_second {rate}")
        descriptions = {
            "queued": ("modrwkv_queue_requests", "gauge", "Requests waiting for a batch slot."),
            "running": ("modrwkv_batch_requests", "gauge", "Requests holding a batch slot (reading or decoding)."),
            "prefilling": ("modrwkv_prefilling_requests", "gauge", "Requests whose prompt is being read."),
            "slots": ("modrwkv_batch_slots", "gauge", "Requests decoded together at most (--max-batch-size)."),
            "peak_batch": ("modrwkv_batch_peak_requests", "gauge", "Largest batch decoded so far."),
            "steps": ("modrwkv_decode_steps_total", "counter", "Batched decode steps run."),
            "completed": ("modrwkv_completed_requests_total", "counter", "Requests that finished generating."),
            "cancelled": ("modrwkv_cancelled_requests_total", "counter", "Requests dropped: the client left."),
            "failed": ("modrwkv_failed_requests_total", "counter", "Requests that failed in the model."),
        }
        for key, (name, kind, help_text) in descriptions.items():
            if key in gauges:
                family(name, kind, help_text)
                lines.append(f"{name} {gauges[key]}")
        return "\n".join(lines) + "\n"
