"""The model a server answers with, and how requests reach it.

A `ServedModel` is one run's serving copy (`mmctr.serving.for_serving`), warmed up, with the facts
that responses and /metrics report. The `Ranker` holds the current one. A reload builds the next
one completely (loaded, copied for serving, warmed up) on its own thread, then replaces the
reference in one assignment: a request that already took the old model finishes on it, a later one
gets the new one, and none waits or fails.

Requests are scored on a small pool of model threads, never on the event loop. With a batch window
(`MicroBatcher`), the requests that queue up while the model threads are busy, or within the
window, go through the model as one forward of all their rows (`score_many`) instead of one each.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmctr.data.batches import Batch
from mmctr.errors import ConfigError, DataError, MMCTRError
from mmctr.serving import cap_history, for_serving, request_batch, score_request, warm_up

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class ServedModel:
    model: nn.Module  # the serving copy, warmed up
    run: Path
    name: str  # the registry name (`din`, `transformer_dcn`, ...)
    version: str  # the first 12 hex digits of the weights' sha256: which weights answered
    n_items: int  # item ids 1..n_items-1 are known (0 is padding)
    max_len: int  # a request keeps its most recent max_len history items, as training did
    precision: str  # "fp32" or "bf16"
    loaded_at: float  # time.time() when it became ready


@dataclass
class RankInput:
    """One validated /v1/rank request."""

    hist: np.ndarray  # (L,) int64, real history items only, most recent last, L ≤ max_len
    candidates: np.ndarray  # (N,) int64
    likes: np.ndarray | None  # (N,) int64 levels, or None for 0
    views: np.ndarray | None
    user_id: int = 0


def _weights_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def resolve_precision(precision: str) -> bool:
    """Whether to serve in bf16. `auto` picks bf16 only where a timed bf16 matmul is at least as
    fast as fp32's (`bf16_is_fast`: AMX CPUs). Elsewhere a bf16 copy answers slower: about twice
    as slow on a Xeon with AVX-512 BF16 but no AMX, many times slower on a CPU without AVX-512."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        from mmctr.training.loop import bf16_is_fast

        return bf16_is_fast()
    return precision == "bf16"


def load_served(
    run: Path, precision: str = "auto", max_history: int | None = None, candidates: int = 100
) -> ServedModel:
    """Load a run directory into a warmed-up serving copy. Call it with the torch thread count the
    requests will use (`warm_up` compiles oneDNN kernels for it)."""
    from mmctr.training.run_dir import load_run

    run = Path(run)
    if not run.is_dir():
        raise DataError(run, None, "run directory not found; pass a directory written by `mmctr train`")
    bf16 = resolve_precision(precision)
    cfg, model, facts = load_run(run)
    if "n_items" not in facts:
        raise DataError(run / "run.json", "n_items", "missing; write the run again with `mmctr train`")
    served = for_serving(model, bf16=bf16, max_history=max_history)
    max_len = int(facts.get("max_len", cfg.train.max_len))
    warm_up(served, candidates=candidates, max_len=min(max_len, max_history or max_len))
    return ServedModel(
        model=served,
        run=run,
        name=cfg.model,
        version=_weights_sha(run / "model.safetensors"),
        n_items=int(facts["n_items"]),
        max_len=max_len,
        precision="bf16" if bf16 else "fp32",
        loaded_at=time.time(),
    )


def score_one(served: ServedModel, inp: RankInput) -> np.ndarray:
    """(N,) click probabilities: the in-process request path (`score_request`), the user side
    computed once for the request's candidates."""
    batch = request_batch(inp.hist, inp.candidates, inp.likes, inp.views, inp.user_id)
    return score_request(served.model, batch)


@torch.inference_mode()
def score_many(served: ServedModel, inputs: list[RankInput]) -> list[np.ndarray]:
    """Probabilities for several requests from one forward over all their rows, each row with its
    own request's history (left-padded to the longest); one request alone takes `score_one`."""
    if len(inputs) == 1:
        return [score_one(served, inputs[0])]
    model = served.model
    sizes = [len(inp.candidates) for inp in inputs]
    longest = max(1, max(len(inp.hist) for inp in inputs))
    hist = np.zeros((sum(sizes), longest), np.int64)  # (B, L)
    row = 0
    for inp, n in zip(inputs, sizes, strict=True):
        if len(inp.hist):
            hist[row : row + n, longest - len(inp.hist) :] = inp.hist
        row += n

    def levels(name: str) -> torch.Tensor:
        parts = [
            getattr(i, name) if getattr(i, name) is not None else np.zeros(n, np.int64)
            for i, n in zip(inputs, sizes, strict=True)
        ]
        return torch.from_numpy(np.concatenate(parts))

    batch = Batch(
        user_id=torch.from_numpy(np.repeat(np.array([i.user_id for i in inputs], np.int64), sizes)),
        hist=torch.from_numpy(hist),
        item_id=torch.from_numpy(np.concatenate([i.candidates for i in inputs])),
        likes=levels("likes"),
        views=levels("views"),
        label=torch.zeros(sum(sizes)),
    )
    model.eval()
    logits = model(cap_history(batch, getattr(model, "max_history", None)))  # (B,)
    probs = torch.sigmoid(logits.float()).numpy()
    return np.split(probs, np.cumsum(sizes)[:-1])


class ReloadInProgress(MMCTRError):
    """A reload was asked for while another one was still loading."""


class Ranker:
    """Holds the served model. `served` is read once per request; `reload` swaps it whole."""

    def __init__(self, served: ServedModel, loader: Callable[[Path], ServedModel]):
        self._served = served
        self._loader = loader
        self._reloading = threading.Lock()
        self.reloads = 0

    @property
    def served(self) -> ServedModel:
        return self._served

    def reload(self, run: Path | None = None) -> ServedModel:
        """Load `run` (default: the current run's directory again, e.g. retrained in place) off
        the request path and swap it in. Raises ReloadInProgress rather than queueing a second
        load; a failed load leaves the current model serving."""
        if not self._reloading.acquire(blocking=False):
            raise ReloadInProgress("a reload is already in progress; try again when it has finished")
        try:
            new = self._loader(Path(run) if run is not None else self._served.run)
            self._served = new  # one reference assignment: atomic for every reader
            self.reloads += 1
            return new
        finally:
            self._reloading.release()


@dataclass
class _Pending:
    served: ServedModel
    inp: RankInput
    future: asyncio.Future


class ModelThreads:
    """The threads the model runs on: `await threads.run(fn, *args)` runs `fn` on one of them and
    hands its result (or exception) back to the awaiting task.

    A leaner hop than `loop.run_in_executor`, which goes through a concurrent.futures.Future, its
    wrapper and two rounds of callbacks. The request path runs cold after each forward. Timed alone
    by scripts/bench_http_wakeup.py after a 17 ms pause, that hop took 0.25 ms and this one 0.18-0.19
    ms (0.06 and 0.03 ms back to back; BENCHMARKS.md).
    Jobs run in arrival order; `shutdown` lets the queued ones finish."""

    def __init__(self, n: int, torch_threads: int, name: str = "mmctr-model"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, args=(torch_threads,), name=f"{name}-{i}", daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def _work(self, torch_threads: int) -> None:
        torch.set_num_threads(torch_threads)
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            try:
                result, err = fn(*args), None
            except Exception as e:  # noqa: BLE001 — handed to the awaiting task
                result, err = None, e
            try:
                loop.call_soon_threadsafe(_settle, future, result, err)
            except RuntimeError:  # the loop closed while this job ran: nobody waits for it
                pass

    async def run(self, fn: Callable, *args):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return await future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()


def _settle(future: asyncio.Future, result, err: Exception | None) -> None:
    if future.done():  # cancelled: the client went away
        return
    if err is None:
        future.set_result(result)
    else:
        future.set_exception(err)


class MicroBatcher:
    """Merges concurrent /v1/rank requests into one forward. Requests that queued while the previous
    batch ran join the next one at once; then the batch waits at most `window_s` for more, up to `max_rows` candidate rows. Runs as one task on the event loop;
    batches run one at a time, on the model threads."""

    def __init__(self, threads: ModelThreads, window_s: float, max_rows: int = 4096):
        self.threads = threads
        self.window_s = window_s
        self.max_rows = max_rows
        self.queue: asyncio.Queue[_Pending] | None = None
        self.batches = 0  # forwards run, and the requests in them: /metrics reports both
        self.requests = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()  # made on the loop that serves (a test client may bring a new one)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def score(self, served: ServedModel, inp: RankInput) -> np.ndarray:
        if self._task is None:
            raise RuntimeError("MicroBatcher.start() was not called (the app's lifespan starts it)")
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Pending(served, inp, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        rows = len(batch[0].inp.candidates)
        deadline = loop.time() + self.window_s  # from when this batch starts to gather
        while rows < self.max_rows:
            if self.queue.empty():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
            else:
                item = self.queue.get_nowait()
            batch.append(item)
            rows += len(item.inp.candidates)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            # a reload can land between two requests of one batch: each model scores its own
            groups: dict[int, list[_Pending]] = {}
            for p in batch:
                groups.setdefault(id(p.served), []).append(p)
            for group in groups.values():
                live = [p for p in group if not p.future.done()]  # a client that went away
                if not live:
                    continue
                try:
                    out = await self.threads.run(score_many, live[0].served, [p.inp for p in live])
                except Exception as err:  # noqa: BLE001 — handed to each waiting request
                    for p in live:
                        if not p.future.done():
                            p.future.set_exception(err)
                    continue
                self.batches += 1
                self.requests += len(live)
                for p, probs in zip(live, out, strict=True):
                    if not p.future.done():
                        p.future.set_result(probs)
