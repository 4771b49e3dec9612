"""`mmctr loadtest`: replay valid-split requests against a running `mmctr serve` at fixed
concurrencies; report throughput and latency percentiles, write them as JSON and a plot.

The client is a small HTTP/1.1 keep-alive client on asyncio streams, one connection per concurrent
worker, each sending its next request as soon as the previous answer arrives (a closed loop, like
wrk). On a 2-core machine the client shares the CPU with the server, so its cost per request is kept
to writing pre-encoded bodies and reading a status line, headers and a Content-Length body; a
general client (httpx) costs several times more per request and would be measured instead.

Only loopback addresses are accepted: a load test sends thousands of requests a second.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import socket
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmctr.errors import ConfigError, MMCTRError
from mmctr.outputs import OutputKind, check_out, move_into_place, temp_beside

LOADTEST_DIR = OutputKind("load-test output", lambda p: p.is_dir() and (p / "loadtest.json").is_file())
MAX_CONCURRENCY = 1024
MAX_DURATION_S = 3600.0


class LoadTestError(MMCTRError):
    """The server could not be reached, or answered something that is not the service's."""


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: `localhost`, 127.0.0.0/8 or ::1 (names are not resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Target:
    host: str  # the address to connect to
    port: int
    url: str  # as given

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"


def parse_target(url: str) -> Target:
    """The --url's loopback host and port; a ConfigError naming --url for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"--url {url!r}: expected http://127.0.0.1:PORT (plain http, the server's address)")
    if not is_loopback(parts.hostname):
        raise ConfigError(
            f"--url {url!r}: the load test only targets this machine (localhost, 127.0.0.0/8, ::1); "
            "it sends thousands of requests a second and must not be pointed at another host"
        )
    if parts.path not in ("", "/"):
        raise ConfigError(f"--url {url!r}: give the server's root (http://127.0.0.1:PORT), not a path")
    host = "127.0.0.1" if parts.hostname.lower() == "localhost" else parts.hostname
    try:
        port = parts.port or 80
    except ValueError as err:
        raise ConfigError(f"--url {url!r}: {err}") from None
    return Target(host, port, url)


# ----------------------------------------------------------------------------------------------
# the client


class ProtocolError(Exception):
    pass


def _request_bytes(target: Target, method: str, path: str, body: bytes) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def _status(line: bytes) -> int:
    if not line:
        raise ProtocolError("the server closed the connection")
    try:
        return int(line.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise ProtocolError(f"not an HTTP status line: {line[:80]!r}") from None


def _header(h: bytes, length: int | None, close: bool) -> tuple[int | None, bool]:
    """(Content-Length, Connection: close) updated by one header line."""
    name, _, value = h.partition(b":")
    name = name.strip().lower()
    if name == b"content-length":
        return int(value), close
    if name == b"connection" and value.strip().lower() == b"close":
        return length, True
    return length, close


END_OF_HEAD = (b"\r\n", b"\n", b"")


class Connection:
    """One keep-alive HTTP/1.1 connection. Responses must carry Content-Length (the service's do)."""

    def __init__(self, target: Target):
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        self.writer.write(_request_bytes(self.target, method, path, body))
        status = _status(await self.reader.readline())
        length, close = None, False
        while (h := await self.reader.readline()) not in END_OF_HEAD:
            length, close = _header(h, length, close)
        if length is None:
            raise ProtocolError("response without Content-Length")
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data


class BlockingConnection:
    """The same client without asyncio, one request at a time (the paired overhead of `mmctr bench
    --serving`). Lean on purpose: the standard library's http.client parses every response's headers
    with the email package, and that is measured with the server."""

    def __init__(self, target: Target, timeout: float = 120.0):
        self.target, self.timeout = target, timeout
        self.sock: socket.socket | None = None
        self.file = None

    def close(self) -> None:
        if self.sock is not None:
            self.file.close()
            self.sock.close()
        self.sock = self.file = None

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((self.target.host, self.target.port), self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.file = self.sock.makefile("rb")
        self.sock.sendall(_request_bytes(self.target, method, path, body))
        status = _status(self.file.readline())
        length, close = None, False
        while (h := self.file.readline()) not in END_OF_HEAD:
            length, close = _header(h, length, close)
        if length is None:
            raise ProtocolError("response without Content-Length")
        data = self.file.read(length)
        if len(data) < length:
            raise ProtocolError("the server closed the connection mid-response")
        if close:
            self.close()
        return status, data


async def get_json(target: Target, path: str) -> dict[str, Any]:
    conn = Connection(target)
    try:
        status, data = await conn.request("GET", path)
    except OSError as err:
        raise LoadTestError(
            f"--url {target.url}: cannot connect ({err.strerror or err}); is `mmctr serve` running there?"
        ) from None
    finally:
        conn.close()
    if status != 200:
        raise LoadTestError(f"{target.url}{path} answered HTTP {status}: {data[:200]!r}")
    try:
        return json.loads(data)
    except ValueError:
        raise LoadTestError(f"{target.url}{path} did not answer JSON; is it an `mmctr serve`?") from None


# ----------------------------------------------------------------------------------------------
# one concurrency level


@dataclass
class LevelResult:
    concurrency: int
    requests: int  # answered 200
    errors: int
    errors_by_kind: dict[str, int]
    seconds: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)


def _percentiles(ms: np.ndarray) -> dict[str, float]:
    if ms.size == 0:
        return {k: float("nan") for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
    }


async def run_level(
    target: Target,
    bodies: list[bytes],
    concurrency: int,
    duration_s: float,
    max_requests: int,
    request_timeout_s: float = 30.0,
    path: str = "/v1/rank",
) -> LevelResult:
    """`concurrency` workers send bodies in turn until `duration_s` passed or `max_requests` were
    sent; a worker still waiting `request_timeout_s` after the end is cancelled and counted."""
    conns = [Connection(target) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))  # connecting is not part of the timing
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0
    t_start = time.perf_counter()
    stop_at = t_start + duration_s

    async def worker(conn: Connection) -> None:
        nonlocal sent
        while sent < max_requests and time.perf_counter() < stop_at:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            try:
                status, _ = await conn.request("POST", path, body)
            except (OSError, ProtocolError, asyncio.IncompleteReadError, ValueError) as err:
                errors[type(err).__name__] += 1
                conn.close()
                continue
            if status == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[f"HTTP {status}"] += 1

    tasks = [asyncio.create_task(worker(c)) for c in conns]
    _, pending = await asyncio.wait(tasks, timeout=duration_s + request_timeout_s)
    for t in pending:
        t.cancel()
        errors["timeout"] += 1
    elapsed = time.perf_counter() - t_start
    for c in conns:
        c.close()
    ms = np.asarray(latencies) * 1e3
    return LevelResult(
        concurrency=concurrency,
        requests=len(latencies),
        errors=sum(errors.values()),
        errors_by_kind=dict(errors),
        seconds=elapsed,
        requests_per_s=len(latencies) / elapsed if elapsed > 0 else 0.0,
        latencies_ms=ms.round(4).tolist(),
        **_percentiles(ms),
    )


# ----------------------------------------------------------------------------------------------
# the whole test


def request_bodies(data_root: Path, n: int, candidates: int, seed: int, max_len: int) -> list[bytes]:
    """`n` /v1/rank bodies from valid rows (`mmctr.serving.make_requests`: the row's history
    and target plus random other items), JSON-encoded once."""
    from mmctr.data.reader import load_dataset
    from mmctr.serving import make_requests

    data = load_dataset(data_root, max_len=max_len, splits=("valid",))
    user_ids = data["valid"].user_id
    out = []
    for r in make_requests(data, n, candidates, seed):
        body = {
            "history": r.hist[r.hist > 0].tolist(),
            "candidates": r.targets.tolist(),
            "likes": r.likes.tolist(),
            "views": r.views.tolist(),
            "user_id": int(user_ids[r.row]),
        }
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


async def _check_first(target: Target, body: bytes, candidates: int) -> None:
    conn = Connection(target)
    try:
        status, data = await conn.request("POST", "/v1/rank", body)
    finally:
        conn.close()
    if status != 200:
        raise LoadTestError(f"{target.url}/v1/rank refused the first request: HTTP {status} {data[:300]!r}")
    got = len(json.loads(data).get("items", []))
    if got != candidates:
        raise LoadTestError(f"{target.url}/v1/rank answered {got} items for {candidates} candidates")


async def _warm(target: Target, bodies: list[bytes], n: int) -> None:
    conn = Connection(target)
    try:
        for i in range(n):
            await conn.request("POST", "/v1/rank", bodies[i % len(bodies)])
    finally:
        conn.close()


def run_loadtest(
    url: str,
    data_root: Path,
    concurrency: list[int],
    duration_s: float,
    max_requests: int,
    candidates: int,
    seed: int = 2025,
    warmup: int = 20,
    label: str | None = None,
    log=print,
) -> dict[str, Any]:
    target = parse_target(url)
    if not concurrency or min(concurrency) < 1 or max(concurrency) > MAX_CONCURRENCY:
        raise ConfigError(f"--concurrency: each level must be from 1 to {MAX_CONCURRENCY}, got {concurrency}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ConfigError(f"--duration must be above 0 and at most {MAX_DURATION_S:.0f} seconds")
    if max_requests < 1:
        raise ConfigError("--requests must be at least 1")
    if candidates < 1:
        raise ConfigError("--candidates must be at least 1")
    server = asyncio.run(get_json(target, "/healthz"))
    if candidates > server.get("max_candidates", candidates):
        raise ConfigError(
            f"--candidates {candidates} is over the server's limit of {server['max_candidates']} (--max-candidates)"
        )
    bodies = request_bodies(
        data_root, min(max_requests, 1024), candidates, seed, int(server.get("max_len", 64))
    )
    from mmctr.data.reader import check_data_root, read_item_info

    n_items = read_item_info(check_data_root(data_root).item_info).n_items
    if "n_items" in server and n_items != server["n_items"]:
        raise ConfigError(
            f"--data {data_root} has {n_items:,} items but the server's run has {server['n_items']:,}: "
            "load-test a server with requests from the data its run was trained on"
        )

    async def main() -> list[LevelResult]:
        await _check_first(target, bodies[0], candidates)
        await _warm(target, bodies, warmup)
        out = []
        for c in concurrency:
            res = await run_level(target, bodies, c, duration_s, max_requests)
            log(
                f"concurrency {c:3d}: {res.requests_per_s:8.1f} requests/s  p50 {res.p50_ms:7.2f} ms  "
                f"p90 {res.p90_ms:7.2f} ms  p99 {res.p99_ms:7.2f} ms  errors {res.errors}"
                + (f" {res.errors_by_kind}" if res.errors else "")
            )
            out.append(res)
        return out

    from mmctr import __version__
    from mmctr.host import cpu_model

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    levels = asyncio.run(main())
    return {
        "label": label,
        "url": url,
        "server": server,
        "data": str(data_root),
        "candidates": candidates,
        "duration_s": duration_s,
        "max_requests": max_requests,
        "warmup_requests": warmup,
        "seed": seed,
        "started": started,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg()},
        "mmctr_version": __version__,
        "levels": [asdict(r) for r in levels],
    }


# ----------------------------------------------------------------------------------------------
# output


def plot_latency_load(result: dict[str, Any], out: Path) -> Path:
    """p50 / p90 / p99 latency against the throughput achieved, one point per concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["levels"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    x = [lv["requests_per_s"] for lv in levels]
    for key, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^:")):
        ax.plot(x, [lv[key] for lv in levels], style, label=key.split("_")[0])
    for lv in levels:
        ax.annotate(
            f"c={lv['concurrency']}" + (f", {lv['errors']} err" if lv["errors"] else ""),
            (lv["requests_per_s"], lv["p99_ms"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    server = result.get("server", {})
    title = result.get("label") or f"{server.get('model', '?')} ({server.get('version', '?')})"
    ax.set_title(f"{title}\nlatency against load, {result['candidates']} candidates a request", fontsize=10)
    ax.set_xlabel("throughput, requests/s")
    ax.set_ylabel("latency, ms")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def write_outputs(result: dict[str, Any], out: Path, overwrite: bool = False) -> Path:
    """OUT/loadtest.json and OUT/loadtest.png, written into a temporary directory that is renamed
    into place when both are complete."""
    check_out(out, LOADTEST_DIR, overwrite)
    tmp = temp_beside(out)
    tmp.mkdir()
    try:
        (tmp / "loadtest.json").write_text(json.dumps(result, indent=1))
        plot_latency_load(result, tmp / "loadtest.png")
        move_into_place(tmp, out, LOADTEST_DIR, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
