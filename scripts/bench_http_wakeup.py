"""How much of `mmctr serve`'s HTTP overhead is the time the model keeps the threads waiting.

The model is replaced by a stub that answers a fixed probability vector after `--pause-ms`: at
once (`none`), after sleeping (`sleep`), or after a busy loop (`spin`). One keep-alive HTTP/1.1
connection sends the load test's bodies; for each request the round trip minus the `ms` the server
reports (body read to response built) is the time spent outside the handler: HTTP, uvicorn, the
client. If that time grows with the pause alone, what it measures is threads and (virtual) CPUs
waking up after waiting, or the same code running slower after the pause: the last rows time the
handler's own code in this process, with no HTTP, back to back and after the same pauses; and the
hop from the event loop to a model thread and back, with no model, the same two ways.

    python scripts/bench_http_wakeup.py --run RUN --data DATA [--pause-ms 17] [--rounds 2] [--client block poll]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERVER = r"""
import sys, time
from pathlib import Path
import numpy as np, torch, uvicorn
torch.set_num_threads(1)
import mmctr.serve.app as appmod
from mmctr.serve.ranker import Ranker, load_served
port, workers, mode, seconds, run = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
sys.path.insert(0, sys.argv[6])
from bench_http_wakeup import pause  # this script's own pause, imported by the server process
served = load_served(Path(run), precision="fp32")
fixed = np.random.default_rng(0).random(1000).astype(np.float32)
def stub(s, inp):
    pause(mode, seconds)
    return fixed[: len(inp.candidates)]
appmod.score_one = stub  # what Service.ranked calls
app = appmod.create_app(Ranker(served, None), appmod.ServeSettings(workers=workers))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def roundtrip(sock: socket.socket, request: bytes, poll: bool) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request on a keep-alive socket and read the whole response. With `poll` the
    client never sleeps: it asks the socket for data in a loop (MSG_DONTWAIT) instead of blocking in
    recv, so its CPU is never idle while the server works."""
    sock.sendall(request)
    buf, need = b"", -1
    flags = socket.MSG_DONTWAIT if poll else 0
    while need < 0 or len(buf) < need:
        try:
            chunk = sock.recv(1 << 16, flags)
        except BlockingIOError:
            continue
        if not chunk:
            raise SystemExit("the server closed the connection")
        buf += chunk
        end = buf.find(b"\r\n\r\n")
        if need < 0 and end >= 0:
            head = buf[:end].decode("latin-1").lower().split("\r\n")
            length = next(int(h.split(":", 1)[1]) for h in head if h.startswith("content-length:"))
            need = end + 4 + length
    status = int(buf.split(b" ", 2)[1])
    return status, buf[buf.find(b"\r\n\r\n") + 4 :]


def outside_handler(port: int, bodies: list[bytes], n: int, warmup: int, poll: bool) -> float:
    for _ in range(600):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except OSError:
            time.sleep(0.05)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for i in range(warmup + n):
        body = bodies[i % len(bodies)]
        request = (
            b"POST /v1/rank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        t0 = time.perf_counter()
        status, answer = roundtrip(sock, request, poll)
        t = (time.perf_counter() - t0) * 1e3
        if status != 200:
            raise SystemExit(f"the server answered HTTP {status}: {answer[:200]!r}")
        if i >= warmup:
            out.append(t - json.loads(answer)["ms"])
    sock.close()
    return statistics.median(out)


def pause(mode: str, seconds: float) -> None:
    if mode == "sleep":
        time.sleep(seconds)
    elif mode == "spin":
        t = time.perf_counter()
        while time.perf_counter() - t < seconds:
            pass


def in_process(run: Path, bodies: list[bytes], n: int, seconds: float) -> dict[str, float]:
    """The handler's own code (body parse, `parse_rank`, the ranked answer and its JSON), no HTTP and no
    model, timed back to back and right after a pause of each kind: median ms per request."""
    import numpy as np

    from mmctr.serve.app import FastJSONResponse, _loads, parse_rank, ranked_items
    from mmctr.serve.ranker import load_served

    served = load_served(run, precision="fp32")
    fixed = np.random.default_rng(0).random(1000).astype(np.float32)

    def handler_code(raw: bytes) -> None:
        inp = parse_rank(_loads(raw), served, 1000)
        items = ranked_items(inp.candidates, fixed[: len(inp.candidates)])
        FastJSONResponse({"items": items, "model": served.name, "version": served.version, "ms": 0.0})

    for raw in bodies[:30]:
        handler_code(raw)
    out = {}
    for mode in ("none", "sleep", "spin"):
        times = []
        for i in range(n):
            pause(mode, seconds)
            t0 = time.perf_counter()
            handler_code(bodies[i % len(bodies)])
            times.append((time.perf_counter() - t0) * 1e3)
        out[mode] = round(statistics.median(times), 3)
    return out


def hop(n: int, seconds: float) -> dict[str, float]:
    """The hop from the event loop to a model thread and back, for a job that does nothing: through
    `loop.run_in_executor` (what `mmctr serve` used until 2026-12-01) and through `ModelThreads`
    (what it uses now), back to back and right after a busy pause on the loop's thread. Median ms."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mmctr.serve.ranker import ModelThreads

    pool, threads = ThreadPoolExecutor(1), ModelThreads(1, 1)

    def job() -> int:
        return 1

    async def timed(name: str, wait: float) -> float:
        loop, times = asyncio.get_running_loop(), []
        for i in range(n + 20):
            pause("spin", wait)
            t0 = time.perf_counter()
            if name == "run_in_executor":
                await loop.run_in_executor(pool, job)
            else:
                await threads.run(job)
            if i >= 20:
                times.append((time.perf_counter() - t0) * 1e3)
        return round(statistics.median(times), 3)

    async def all_of_them() -> dict[str, float]:
        out = {}
        for name in ("run_in_executor", "ModelThreads"):
            for wait in (0.0, seconds):
                out[f"{name}, {'after the pause' if wait else 'back to back'}"] = await timed(name, wait)
        return out

    try:
        return asyncio.run(all_of_them())
    finally:
        pool.shutdown()
        threads.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a Task-2 run directory (loaded, then stubbed)")
    p.add_argument("--data", type=Path, required=True, help="data root whose valid split gives the bodies")
    p.add_argument("--pause-ms", type=float, default=17.0, help="the stub's pause (the DIN's p50 here)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--client",
        choices=("block", "poll"),
        nargs="+",
        default=["block"],
        help="block: the client waits in recv (as any HTTP client does); poll: it spins on the socket",
    )
    args = p.parse_args(argv)
    from mmctr.serve.loadtest import request_bodies

    bodies = request_bodies(args.data, 200, 100, 0, 64)
    res: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode, client in [(m, c) for m in ("none", "sleep", "spin") for c in args.client]:
            port = free_port()
            cmd = [
                sys.executable,
                "-c",
                SERVER,
                str(port),
                str(args.workers),
                mode,
                str(args.pause_ms / 1e3),
                str(args.run),
                str(Path(__file__).resolve().parent),
            ]
            proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
            try:
                ms = outside_handler(port, bodies, args.requests, 30, client == "poll")
                res.setdefault(f"{mode:5s} client {client}", []).append(round(ms, 3))
            finally:
                proc.terminate()
                proc.wait()
        for mode, ms in in_process(args.run, bodies, args.requests, args.pause_ms / 1e3).items():
            res.setdefault(f"{mode:5s} in process, the handler's code alone", []).append(ms)
        for name, ms in hop(args.requests, args.pause_ms / 1e3).items():
            res.setdefault(f"hop to a model thread: {name}", []).append(ms)
    print(
        f"median ms per round (workers {args.workers}, pause {args.pause_ms:g} ms); over HTTP: outside the handler"
    )
    for mode, values in res.items():
        print(f"  {mode} {values}")
    return 0


if __name__ == "__main__":
    from mmctr.errors import script_exit

    script_exit(main)
