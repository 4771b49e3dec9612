"""The ASGI app (Starlette) over a `Ranker`, and the validation of what clients send.

POST /v1/rank       {"history": [ids], "candidates": [ids], "likes": [...], "views": [...],
                     "user_id": int} → {"items": [{"item_id", "score"}, ...] best first,
                     "model", "version", "ms" (the handler's time), "model_ms" (the model's part
                     of it; null under micro-batching)}
POST /v1/search     {"query": str, "image": base64, "k": int} → {"hits": [...], "ms"}; 404 when the
                    server has no --index
GET  /healthz       the model answering, its version and limits
GET  /metrics       Prometheus text (`mmctr.serve.metrics`)
POST /admin/reload  {"run": path} (optional): load a run off the request path and swap it in

Every error is a JSON body {"error": what was wrong and what to do, "field": the field at fault}:
400 for a body that is not a JSON object, 413 for one over the size limit, 422 for a field of the
wrong type or value, 404 / 405 for a wrong route or method, 409 for a reload while one runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

try:  # 6x faster than the standard library on a ranked response of 100 items (BENCHMARKS.md)
    import orjson
except ImportError:  # pragma: no cover - orjson is in the `serve` extra
    orjson = None

from mmctr.data.schema import N_LEVELS
from mmctr.errors import MMCTRError
from mmctr.serve.metrics import Metrics, MetricsMiddleware, counter, model_gauges
from mmctr.serve.ranker import (
    MicroBatcher,
    ModelThreads,
    Ranker,
    RankInput,
    ReloadInProgress,
    ServedModel,
    score_one,
)

log = logging.getLogger("mmctr.serve")

RANK_FIELDS = ("history", "candidates", "likes", "views", "user_id")
SEARCH_FIELDS = ("query", "image", "k")
RELOAD_FIELDS = ("run",)
ROUTES = ("/v1/rank", "/v1/search", "/healthz", "/metrics", "/admin/reload")
MAX_K = 100


@dataclass(frozen=True)
class ServeSettings:
    threads: int = 1  # torch threads per model call
    workers: int = 1  # model threads: requests scored at the same time; 0: on the event loop itself
    max_candidates: int = 1000
    max_body_bytes: int = 4 << 20  # room for a base64 page image in /v1/search
    batch_window_ms: float = 0.0  # 0: each request is its own forward
    batch_max_rows: int = 4096


class BadRequest(Exception):
    """A client error: the HTTP status, the field at fault, and what to do."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


class FastJSONResponse(JSONResponse):
    """A JSON response rendered by orjson where it is installed (the same JSON: shortest float
    repr, UTF-8), by the standard library otherwise."""

    def render(self, content: Any) -> bytes:
        if orjson is None:  # pragma: no cover
            return super().render(content)
        return orjson.dumps(content)


def _loads(raw: bytes) -> Any:
    """The body parsed by orjson where it can; what orjson refuses (integers past 64 bits, which
    the field checks then name) goes to the standard library, whose errors the client gets."""
    if orjson is not None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _json_type(v: Any) -> str:
    if type(v) is int:
        return "an integer"
    if isinstance(v, float):
        return "a number"
    return _JSON_TYPES.get(type(v), type(v).__name__)


# ----------------------------------------------------------------------------------------------
# reading and checking bodies


async def read_json(request: Request, limit: int, empty_ok: bool = False) -> dict[str, Any]:
    """The body as a JSON object, refused with 413 as soon as it passes `limit` bytes (before
    reading it, when Content-Length says so)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, "Content-Length", f"header is {declared!r}, not a byte count")
        if int(declared) > limit:
            raise BadRequest(
                413,
                "body",
                f"{int(declared):,} bytes, over this server's limit of {limit:,} (--max-body-bytes)",
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "body", f"over this server's limit of {limit:,} bytes (--max-body-bytes)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip() and empty_ok:
        return {}
    try:
        body = _loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(400, "body", f"not valid JSON ({err}); send a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "body", f"expected a JSON object, got {_json_type(body)}")
    return body


def _check_known(body: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in body:
        if key not in known:
            raise BadRequest(422, key, f"unknown field {key!r}; known fields: {', '.join(known)}")


def _int_list(body: dict[str, Any], name: str, what: str, lo: int, hi: int, range_what: str) -> list | None:
    """body[name], a list of integers in lo..hi-1; None when absent or null; 422 naming the field
    (and the first bad index) for anything else. Checked on the list with builtins (C loops, no
    numpy call): after the model's forward the request path's code runs cold, and every numpy call
    it avoids is cache misses saved (BENCHMARKS, "The overhead after a pause is cold code")."""
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, list):
        raise BadRequest(422, name, f"must be an array of {what}, got {_json_type(v)}")
    # `type`, not isinstance: true/false are not ids. The set of types is built in C (a few µs for
    # 100 ids, against 40 for a generator over them); the index of a bad value only on failure.
    if not set(map(type, v)) <= {int}:
        i = next(i for i, x in enumerate(v) if type(x) is not int)
        raise BadRequest(422, name, f"{name}[{i}] is {_json_type(v[i])}; {name} must hold only {what}")
    if v and (min(v) < lo or max(v) >= hi):
        i = next(i for i, x in enumerate(v) if not lo <= x < hi)
        raise BadRequest(422, name, f"{name}[{i}] = {v[i]} is not {range_what} ({lo}..{hi - 1})")
    return v


def parse_rank(body: dict[str, Any], served: ServedModel, max_candidates: int) -> RankInput:
    """A checked /v1/rank request. History zeros are padding and are dropped; a history longer than
    the run's max_len keeps its most recent items, as the training data did."""
    _check_known(body, RANK_FIELDS)
    n_items = served.n_items
    known = f"an item id of this run's item table, {served.run}"
    cands = _int_list(body, "candidates", "item ids", 1, n_items, known)
    if cands is None:
        raise BadRequest(422, "candidates", "is required: an array of the item ids to rank")
    if not cands:
        raise BadRequest(422, "candidates", "is empty; give at least one item id to rank")
    if len(cands) > max_candidates:
        raise BadRequest(
            422,
            "candidates",
            f"{len(cands):,} items, more than this server's limit of {max_candidates:,} "
            "(--max-candidates); split the request",
        )
    hist = _int_list(body, "history", "item ids", 0, n_items, known + " or 0 (padding)") or []
    if 0 in hist:
        hist = [h for h in hist if h]
    levels = {}
    for name in ("likes", "views"):
        arr = _int_list(body, name, f"{name} levels", 0, N_LEVELS, f"a {name} level")
        if arr is not None:
            if len(arr) != len(cands):
                raise BadRequest(
                    422, name, f"{len(arr)} values for {len(cands)} candidates; give one per candidate"
                )
            arr = np.array(arr, dtype=np.int64)
        levels[name] = arr
    user_id = body.get("user_id", 0)
    if user_id is None:
        user_id = 0
    if type(user_id) is not int:
        raise BadRequest(422, "user_id", f"must be an integer, got {_json_type(user_id)}")
    if not 0 <= user_id < 2**63:
        raise BadRequest(422, "user_id", f"{user_id} is not a user id (0..2^63-1)")
    return RankInput(
        np.array(hist[-served.max_len :], dtype=np.int64),
        np.array(cands, dtype=np.int64),
        levels["likes"],
        levels["views"],
        user_id,
    )


def _timed_score(served: ServedModel, inp: RankInput) -> tuple[np.ndarray, float]:
    """`score_one` and the seconds it took, on the thread that ran it."""
    t0 = time.perf_counter()
    probs = score_one(served, inp)
    return probs, time.perf_counter() - t0


def ranked_items(candidates: np.ndarray, probs: np.ndarray) -> list[dict[str, Any]]:
    """/v1/rank's answer: the candidates with their probabilities, best first (ties in request order)."""
    order = np.argsort(-probs, kind="stable")
    return [
        {"item_id": i, "score": s}
        for i, s in zip(candidates[order].tolist(), probs[order].tolist(), strict=True)
    ]


def parse_search(body: dict[str, Any]) -> tuple[str | None, bytes | None, int]:
    _check_known(body, SEARCH_FIELDS)
    query, image, k = body.get("query"), body.get("image"), body.get("k", 5)
    if query is not None and not isinstance(query, str):
        raise BadRequest(422, "query", f"must be a string, got {_json_type(query)}")
    if image is not None:
        if not isinstance(image, str):
            raise BadRequest(422, "image", f"must be a base64 string, got {_json_type(image)}")
        try:
            image = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(422, "image", "is not valid base64 (standard alphabet, padded)") from None
        _check_image(image)
    if not (query and query.strip()) and not image:
        raise BadRequest(422, "query", "give a non-empty query, an image, or both")
    if type(k) is not int or not 1 <= k <= MAX_K:
        raise BadRequest(422, "k", f"must be an integer from 1 to {MAX_K}, got {json.dumps(k)}")
    return query or None, image or None, k


def _check_image(data: bytes) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadRequest(422, "image", f"is not an image PIL can read ({err})") from None


# ----------------------------------------------------------------------------------------------
# the app


class Service:
    """What the routes share: the ranker, the optional index, the model threads and the metrics."""

    def __init__(self, ranker: Ranker, settings: ServeSettings, index: Any = None):
        self.ranker, self.settings, self.index = ranker, settings, index
        self.metrics = Metrics()
        # workers=0 still searches (Track 1) on a model thread
        self.model_threads = ModelThreads(max(settings.workers, 1), settings.threads)
        self.reloader = ThreadPoolExecutor(1, thread_name_prefix="mmctr-reload")
        self.batcher = (
            MicroBatcher(self.model_threads, settings.batch_window_ms / 1e3, settings.batch_max_rows)
            if settings.batch_window_ms > 0
            else None
        )

    def close(self) -> None:
        self.model_threads.shutdown()
        self.reloader.shutdown(wait=True)

    # -- routes --

    async def rank(self, request: Request) -> Response:
        t0 = time.perf_counter()
        body = await read_json(request, self.settings.max_body_bytes)
        served = self.ranker.served  # read once: a reload during this request does not change it
        inp = parse_rank(body, served, self.settings.max_candidates)
        model_s = None  # a micro-batch's forward is shared: no time of this request's own
        if self.batcher is not None:
            probs = await self.batcher.score(served, inp)
        elif self.settings.workers == 0:  # on the event loop's thread: no hop to a worker thread
            probs, model_s = _timed_score(served, inp)
        else:
            probs, model_s = await self.model_threads.run(_timed_score, served, inp)
        if model_s is not None:
            self.metrics.model.observe(model_s)
        items = ranked_items(inp.candidates, probs)
        return FastJSONResponse(
            {
                "items": items,
                "model": served.name,
                "version": served.version,
                "ms": round((time.perf_counter() - t0) * 1e3, 3),
                "model_ms": None if model_s is None else round(model_s * 1e3, 3),
            }
        )

    async def search(self, request: Request) -> Response:
        t0 = time.perf_counter()
        if self.index is None:
            raise BadRequest(
                404, "index", "this server has no index; start it with `mmctr serve --index INDEX`"
            )
        query, image, k = parse_search(await read_json(request, self.settings.max_body_bytes))
        from mmctr.retrieval.index.store import hit_dicts

        try:
            hits = await self.model_threads.run(self.index.search, query, image, k)
        except MMCTRError as err:
            raise BadRequest(422, "image" if image else "query", str(err)) from None
        return JSONResponse({"hits": hit_dicts(hits), "ms": round((time.perf_counter() - t0) * 1e3, 3)})

    async def healthz(self, request: Request) -> Response:
        s = self.ranker.served
        return JSONResponse(
            {
                "status": "ok",
                "model": s.name,
                "version": s.version,
                "run": str(s.run),
                "precision": s.precision,
                "n_items": s.n_items,
                "max_len": s.max_len,
                "max_candidates": self.settings.max_candidates,
                "batch_window_ms": self.settings.batch_window_ms,
                "threads": self.settings.threads,
                "workers": self.settings.workers,
                "index": self.index is not None,
                "reloads": self.ranker.reloads,
            }
        )

    async def metrics_text(self, request: Request) -> Response:
        s = self.ranker.served
        gauges = model_gauges(s.name, str(s.run), s.version, s.precision, s.loaded_at, self.ranker.reloads)
        if self.batcher is not None:
            gauges += [
                counter("mmctr_rank_batches_total", "Micro-batches scored.", self.batcher.batches),
                counter(
                    "mmctr_rank_batched_requests_total",
                    "Requests scored in micro-batches.",
                    self.batcher.requests,
                ),
            ]
        return PlainTextResponse(
            self.metrics.exposition(gauges), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def reload(self, request: Request) -> Response:
        t0 = time.perf_counter()
        body = await read_json(request, self.settings.max_body_bytes, empty_ok=True)
        _check_known(body, RELOAD_FIELDS)
        run = body.get("run")
        if run is not None and (not isinstance(run, str) or not run):
            raise BadRequest(422, "run", f"must be a run directory's path, got {_json_type(run)}")
        served = await self._reload(Path(run) if run else None)
        return JSONResponse(
            {
                "model": served.name,
                "version": served.version,
                "run": str(served.run),
                "ms": round((time.perf_counter() - t0) * 1e3, 3),
            }
        )

    async def _reload(self, run: Path | None) -> ServedModel:
        loop = asyncio.get_running_loop()
        try:
            served = await loop.run_in_executor(self.reloader, self.ranker.reload, run)
        except ReloadInProgress as err:
            raise BadRequest(409, "run", str(err)) from None
        except MMCTRError as err:
            raise BadRequest(422, "run", f"{err}; the previous model is still serving") from None
        log.info("reloaded %s (%s, version %s)", served.run, served.name, served.version)
        return served

    def on_sighup(self) -> None:
        async def reload() -> None:
            try:
                await self._reload(None)
            except BadRequest as err:
                log.error("SIGHUP reload failed: %s", err.message)

        asyncio.get_running_loop().create_task(reload())

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        if self.batcher is not None:
            self.batcher.start()
        loop = asyncio.get_running_loop()
        hup = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self.on_sighup)  # main thread, POSIX only
            hup = True
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            if self.batcher is not None:
                await self.batcher.stop()


async def _bad_request(request: Request, err: BadRequest) -> Response:
    return _error(err.status, err.message, err.field)


async def _http_error(request: Request, err: HTTPException) -> Response:
    message = {404: f"no route {request.url.path}; routes: {', '.join(ROUTES)}"}.get(
        err.status_code, err.detail
    )
    if err.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return _error(err.status_code, message, None)


async def _server_error(request: Request, err: Exception) -> Response:
    log.exception("error answering %s %s", request.method, request.url.path, exc_info=err)
    return _error(500, f"internal error ({type(err).__name__}); the server's log has the details")


def create_app(ranker: Ranker, settings: ServeSettings | None = None, index: Any = None) -> Starlette:
    """The service's ASGI app. `index`: a loaded `DocumentIndex` (anything with its `search`), or
    None for a server without /v1/search. The app's `state.service` holds what it runs on; call its
    `close()` once the server has stopped."""
    service = Service(ranker, settings or ServeSettings(), index)
    routes = [
        Route("/v1/rank", service.rank, methods=["POST"]),
        Route("/v1/search", service.search, methods=["POST"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/metrics", service.metrics_text, methods=["GET"]),
        Route("/admin/reload", service.reload, methods=["POST"]),
    ]
    handlers: dict[Any, Callable] = {
        BadRequest: _bad_request,
        HTTPException: _http_error,
        Exception: _server_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=service.lifespan)
    app.state.service = service
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, routes=ROUTES)
    return app
