"""The service's numbers in Prometheus' text exposition format (version 0.0.4), written by hand:
a handful of series need no client library.

mmctr_requests_total{route,status}           counter: responses sent
mmctr_request_duration_seconds{route}        histogram: time from the request's arrival to its
                                             response's last byte
mmctr_model_duration_seconds                 histogram: the model's part of each /v1/rank request,
                                             timed on the thread that ran it (not under micro-batching,
                                             where a forward is shared)
mmctr_requests_in_flight                     gauge: requests being answered now
mmctr_model_info{model,run,version,precision} 1 for the model answering now
mmctr_model_loaded_timestamp_seconds         when it became ready
mmctr_model_reloads_total                    counter: successful reloads
mmctr_rank_batches_total, mmctr_rank_batched_requests_total   counters: micro-batches run and the
                                             requests in them (their ratio is the mean batch size)

Every update happens on the event loop's thread, so plain integers need no lock.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# seconds: a warmed DIN request answers in ~1-10 ms on 2 cores; queueing under load adds the rest
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # last: above every bucket
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


def _label(value: object) -> str:
    s = str(value)
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _histogram(name: str, h: Histogram, **labels: object) -> list[str]:
    out, cumulative = [], 0
    for le, n in zip((*BUCKETS, "+Inf"), h.counts, strict=True):
        cumulative += n
        out.append(f"{name}_bucket{_labels(**labels, le=le)} {cumulative}")
    tail = _labels(**labels) if labels else ""
    return [*out, f"{name}_sum{tail} {h.total:.6f}", f"{name}_count{tail} {cumulative}"]


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.model = Histogram()  # observed by /v1/rank, on the event loop's thread like the rest
        self.in_flight = 0

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, route: str, status: int, seconds: float) -> None:
        self.in_flight -= 1
        self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
        self.durations.setdefault(route, Histogram()).observe(seconds)

    def exposition(self, gauges: Iterable[tuple[str, str, str, str, float]] = ()) -> str:
        """The text /metrics returns. `gauges`: extra (name, type, help, labels, value) samples, e.g.
        the model's, read at the time of the scrape."""
        out = [
            "# HELP mmctr_requests_total Responses sent, by route and HTTP status.",
            "# TYPE mmctr_requests_total counter",
        ]
        for (route, status), n in sorted(self.requests.items()):
            out.append(f"mmctr_requests_total{_labels(route=route, status=status)} {n}")
        out += [
            "# HELP mmctr_request_duration_seconds Time from a request's arrival to its response.",
            "# TYPE mmctr_request_duration_seconds histogram",
        ]
        for route, h in sorted(self.durations.items()):
            out += _histogram("mmctr_request_duration_seconds", h, route=route)
        out += [
            "# HELP mmctr_model_duration_seconds The model's part of each /v1/rank request (not micro-batched).",
            "# TYPE mmctr_model_duration_seconds histogram",
            *_histogram("mmctr_model_duration_seconds", self.model),
        ]
        out += [
            "# HELP mmctr_requests_in_flight Requests being answered now.",
            "# TYPE mmctr_requests_in_flight gauge",
            f"mmctr_requests_in_flight {self.in_flight}",
        ]
        seen: set[str] = set()
        for name, kind, help_, labels, value in gauges:
            if name not in seen:
                out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
                seen.add(name)
            out.append(f"{name}{labels} {value:g}")
        return "\n".join(out) + "\n"


def model_gauges(
    model: str, run: str, version: str, precision: str, loaded_at: float, reloads: int
) -> list[tuple[str, str, str, str, float]]:
    return [
        (
            "mmctr_model_info",
            "gauge",
            "The model answering now (1), with its run directory and weights' sha256 prefix.",
            _labels(model=model, run=run, version=version, precision=precision),
            1,
        ),
        (
            "mmctr_model_loaded_timestamp_seconds",
            "gauge",
            "Unix time the model answering now became ready.",
            "",
            loaded_at,
        ),
        ("mmctr_model_reloads_total", "counter", "Successful model reloads.", "", reloads),
    ]


def counter(name: str, help_: str, value: float) -> tuple[str, str, str, str, float]:
    return (name, "counter", help_, "", value)


class MetricsMiddleware:
    """Pure-ASGI middleware that counts every HTTP request by route and status and times it.
    Routes outside `routes` are counted as "other", so that scanners cannot grow the label set."""

    def __init__(self, app: Callable, metrics: Metrics, routes: Iterable[str]):
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500  # what the client sees if the app fails before it starts a response

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.started()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.finished(route, status, time.perf_counter() - t0)
