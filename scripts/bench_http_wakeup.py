"""How much of `mmctr serve`'s HTTP overhead is the time the model keeps the threads waiting.

The model is replaced by a stub that answers a fixed probability vector after `--pause-ms`: at
once (`none`), after sleeping (`sleep`), or after a busy loop (`spin`). One keep-alive `http.client`
connection sends the load test's bodies; for each request the round trip minus the `ms` the server
reports (body read to response built) is the time spent outside the handler: HTTP, uvicorn, the
client. If that time grows with the pause alone, what it measures is threads and (virtual) CPUs
waking up after waiting, not the code on the request path.

    python scripts/bench_http_wakeup.py --run RUN --data DATA [--pause-ms 17] [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
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
port, workers, mode, pause, run = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
served = load_served(Path(run), precision="fp32")
fixed = np.random.default_rng(0).random(1000).astype(np.float32)
def stub(s, inp):
    if mode == "sleep":
        time.sleep(pause)
    elif mode == "spin":
        t = time.perf_counter()
        while time.perf_counter() - t < pause:
            pass
    return fixed[: len(inp.candidates)]
appmod.score_one = stub  # what Service.ranked calls
app = appmod.create_app(Ranker(served, None), appmod.ServeSettings(workers=workers))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outside_handler(port: int, bodies: list[bytes], n: int, warmup: int) -> float:
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.connect()
            break
        except OSError:
            time.sleep(0.05)
    out = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        conn.request(
            "POST", "/v1/rank", body=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        answer = resp.read()
        t = (time.perf_counter() - t0) * 1e3
        if resp.status != 200:
            raise SystemExit(f"the server answered HTTP {resp.status}: {answer[:200]!r}")
        if i >= warmup:
            out.append(t - json.loads(answer)["ms"])
    conn.close()
    return statistics.median(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a Task-2 run directory (loaded, then stubbed)")
    p.add_argument("--data", type=Path, required=True, help="data root whose valid split gives the bodies")
    p.add_argument("--pause-ms", type=float, default=17.0, help="the stub's pause (the DIN's p50 here)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    from mmctr.serve.loadtest import request_bodies

    bodies = request_bodies(args.data, 200, 100, 0, 64)
    res: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode in ("none", "sleep", "spin"):
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
            ]
            proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
            try:
                res.setdefault(mode, []).append(round(outside_handler(port, bodies, args.requests, 30), 3))
            finally:
                proc.terminate()
                proc.wait()
    print(f"outside the handler, median ms per round (workers {args.workers}, pause {args.pause_ms:g} ms):")
    for mode, values in res.items():
        print(f"  {mode:5s} {values}")
    return 0


if __name__ == "__main__":
    from mmctr.errors import script_exit

    script_exit(main)
