"""`mmctr serve` and `mmctr loadtest`: rank through the app and through a real uvicorn server and get
the in-process scores; every malformed request class gets its 4xx naming the field; a reload during
a stream of concurrent requests fails none; /metrics moves; search through a stub index (a real one
is slow to build: marked slow); the load test against the real server writes its JSON and plot;
the CLI as a subprocess reloads on SIGHUP and finishes an in-flight request on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from starlette.testclient import TestClient  # noqa: E402

from mmctr.cli import main  # noqa: E402
from mmctr.errors import ConfigError  # noqa: E402
from mmctr.serve.app import ServeSettings, create_app  # noqa: E402
from mmctr.serve.loadtest import parse_target  # noqa: E402
from mmctr.serve.ranker import Ranker, RankInput, load_served, score_many, score_one  # noqa: E402
from mmctr.serving import make_requests, request_batch, score_request  # noqa: E402

SMALL_DIN = {"embedding_dim": 16, "dnn_hidden": [32, 16], "attention_hidden": [16], "use_user_id": True}


def _save_run(data_root: Path, out: Path, seed: int) -> Path:
    """An untrained small DIN saved as a run directory: serving needs weights, not good ones."""
    from helpers import as_if_trained
    from mmctr.config import resolve_run_config
    from mmctr.data.reader import load_dataset
    from mmctr.training.run_dir import build_model, save_run

    data = load_dataset(data_root, splits=("valid",))
    cfg = resolve_run_config("din", overrides={"model_params": SMALL_DIN, "train": {"epochs": 1}})
    torch.manual_seed(seed)
    model = as_if_trained(build_model(cfg, data.items), seed).eval()
    facts = {"n_items": data.items.n_items, "max_len": data.max_len, "data_root": str(data_root)}
    return save_run(out, cfg, model, data.items, {}, facts)


@pytest.fixture(scope="module")
def runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("serve_runs")
    return _save_run(tiny_data, base / "a", 0), _save_run(tiny_data, base / "b", 1)


@pytest.fixture(scope="module")
def loader():
    return lambda run: load_served(run, precision="fp32", candidates=20)


@pytest.fixture(scope="module")
def requests_(tiny_data: Path):
    from mmctr.data.reader import load_dataset

    data = load_dataset(tiny_data, splits=("valid",))
    return make_requests(data, 12, 20, seed=3)


def _body(r) -> dict:
    return {
        "history": r.hist[r.hist > 0].tolist(),
        "candidates": r.targets.tolist(),
        "likes": r.likes.tolist(),
        "views": r.views.tolist(),
        "user_id": 7,
    }


def _in_process(served, r) -> np.ndarray:
    return score_request(served.model, request_batch(r.hist, r.targets, r.likes, r.views, user_id=7))


def _check_ranked(answer: dict, served, r) -> None:
    expected = _in_process(served, r)
    got = {it["item_id"]: it["score"] for it in answer["items"]}
    scores = [it["score"] for it in answer["items"]]
    assert scores == sorted(scores, reverse=True)  # best first
    assert len(answer["items"]) == len(r.targets) and answer["version"] == served.version
    for item, p in zip(r.targets.tolist(), expected.tolist(), strict=True):
        assert got[item] == pytest.approx(p, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# in process (Starlette's TestClient)


@pytest.fixture(scope="module")
def client(runs, loader) -> Iterator[TestClient]:
    ranker = Ranker(loader(runs[0]), loader)
    app = create_app(ranker, ServeSettings(max_candidates=50, max_body_bytes=4096))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.service.close()


def test_rank_answers_the_in_process_scores(client: TestClient, requests_) -> None:
    served = client.app.state.service.ranker.served
    for r in requests_[:4]:
        resp = client.post("/v1/rank", json=_body(r))
        assert resp.status_code == 200, resp.text
        _check_ranked(resp.json(), served, r)
        assert 0 < resp.json()["model_ms"] <= resp.json()["ms"]  # the model's part of the handler's time
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "din" and health["index"] is False
    samples = _samples(client.get("/metrics").text)
    n_model = samples["mmctr_model_duration_seconds_count"]
    assert n_model >= 4 and 0 < samples["mmctr_model_duration_seconds_sum"]
    assert samples['mmctr_model_duration_seconds_bucket{le="+Inf"}'] == n_model


def test_scoring_on_the_event_loop_answers_the_same(runs, loader, requests_) -> None:
    """--workers 0 scores on the event loop's thread instead of a worker thread: same answers, and
    a response body that is the standard library's JSON for the same content (orjson renders it)."""
    ranker = Ranker(loader(runs[0]), loader)
    app = create_app(ranker, ServeSettings(workers=0))
    with TestClient(app, raise_server_exceptions=False) as c:
        for r in requests_[:3]:
            resp = c.post("/v1/rank", json=_body(r))
            assert resp.status_code == 200, resp.text
            _check_ranked(resp.json(), ranker.served, r)
            assert (
                json.loads(resp.content) == resp.json() and resp.headers["content-type"] == "application/json"
            )
        big = _body(requests_[0]) | {"candidates": [2**70]}  # past orjson's integers: the field is named
        resp = c.post("/v1/rank", content=json.dumps(big))
        assert resp.status_code == 422 and resp.json()["field"] == "candidates"
    app.state.service.close()


def test_micro_batch_scores_equal_one_request_each(runs, loader, requests_) -> None:
    served = loader(runs[0])
    inputs = [
        RankInput(r.hist[r.hist > 0], r.targets, r.likes, r.views, user_id=i) for i, r in enumerate(requests_)
    ]
    inputs[2] = RankInput(np.zeros(0, np.int64), inputs[2].candidates[:5], None, None)  # no history
    merged = score_many(served, inputs)
    for inp, got in zip(inputs, merged, strict=True):
        np.testing.assert_allclose(got, score_one(served, inp), atol=1e-5)


_N = 401  # the tiny data's item table (400 items and the padding row)
_OK = {"history": [1, 2, 3], "candidates": [4, 5, 6]}


@pytest.mark.parametrize(
    "body, status, field",
    [
        (b"{not json", 400, "body"),
        (b"[1, 2]", 400, "body"),
        (b"", 400, "body"),
        ({"history": [1]}, 422, "candidates"),
        ({**_OK, "candidates": []}, 422, "candidates"),
        ({**_OK, "candidates": [4, _N]}, 422, "candidates"),  # outside the item table
        ({**_OK, "candidates": [0, 4]}, 422, "candidates"),  # 0 is padding, not an item
        ({**_OK, "candidates": [-3]}, 422, "candidates"),
        ({**_OK, "candidates": [2**70]}, 422, "candidates"),
        ({**_OK, "history": [1, 99999]}, 422, "history"),
        ({**_OK, "history": [1, -(2**70)]}, 422, "history"),
        ({**_OK, "views": [1, 2, -1]}, 422, "views"),
        ({**_OK, "candidates": "4,5"}, 422, "candidates"),
        ({**_OK, "candidates": [4, "5"]}, 422, "candidates"),
        ({**_OK, "candidates": [4, 5.0]}, 422, "candidates"),
        ({**_OK, "candidates": [4, True]}, 422, "candidates"),
        ({**_OK, "history": {"a": 1}}, 422, "history"),
        ({**_OK, "likes": [1, 2]}, 422, "likes"),  # 2 values for 3 candidates
        ({**_OK, "views": [1, 2, 3, 4]}, 422, "views"),
        ({**_OK, "likes": [1, 2, 11]}, 422, "likes"),  # levels are 0..10
        ({**_OK, "user_id": "u7"}, 422, "user_id"),
        ({**_OK, "user_id": -1}, 422, "user_id"),
        ({**_OK, "colour": "red"}, 422, "colour"),  # unknown fields are named, not ignored
        ({**_OK, "candidates": list(range(1, 52))}, 422, "candidates"),  # over --max-candidates 50
        ({**_OK, "history": [1] * 3000}, 413, "body"),  # over --max-body-bytes 4096
    ],
    ids=lambda v: None if isinstance(v, dict | bytes) else str(v),
)
def test_bad_rank_requests_get_4xx_naming_the_field(
    client: TestClient, body, status: int, field: str
) -> None:
    if isinstance(body, bytes):
        resp = client.post("/v1/rank", content=body, headers={"content-type": "application/json"})
    else:
        resp = client.post("/v1/rank", json=body)
    assert resp.status_code == status, resp.text
    answer = resp.json()
    assert answer["field"] == field and answer["error"], answer
    assert "Traceback" not in resp.text


def test_parse_rank_drops_padding_keeps_the_latest_items_and_names_the_bad_index(runs, loader) -> None:
    from mmctr.serve.app import BadRequest, parse_rank

    served = loader(runs[0])
    cut = served.max_len
    hist = [0, 0] + [1 + i % 7 for i in range(cut + 5)]  # padding, then more items than the run keeps
    inp = parse_rank({"history": hist, "candidates": [4, 5], "likes": [0, 10]}, served, 50)
    assert inp.hist.dtype == np.int64 and inp.candidates.dtype == np.int64
    assert inp.hist.tolist() == [h for h in hist if h][-cut:]  # the most recent, as in training
    assert inp.likes.tolist() == [0, 10] and inp.views is None
    empty = parse_rank({"candidates": [4]}, served, 50)
    assert empty.hist.shape == (0,) and empty.user_id == 0
    with pytest.raises(BadRequest, match=r"candidates\[2\] = 401 is not an item id"):
        parse_rank({"candidates": [4, 5, _N, 6]}, served, 50)
    with pytest.raises(BadRequest, match=r"history\[1\] = -1 is not an item id .* or 0"):
        parse_rank({"candidates": [4], "history": [3, -1]}, served, 50)


def test_body_over_the_limit_without_content_length_is_413(client: TestClient) -> None:
    def chunks():  # streamed: no Content-Length header, the limit is counted while reading
        yield b'{"candidates": [1], "history": ['
        for _ in range(1000):
            yield b"1, 1, 1, "
        yield b"1]}"

    resp = client.post("/v1/rank", content=chunks())
    assert resp.status_code == 413 and resp.json()["field"] == "body"


def test_wrong_routes_methods_and_missing_index_answer_json(client: TestClient) -> None:
    resp = client.get("/v1/rank")
    assert resp.status_code == 405 and "GET" in resp.json()["error"]
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and "/v1/rank" in resp.json()["error"]
    resp = client.post("/v1/search", json={"query": "bridges"})
    assert resp.status_code == 404 and resp.json()["field"] == "index"
    assert "--index" in resp.json()["error"]


def test_reload_errors_name_the_run(client: TestClient, tmp_path: Path) -> None:
    before = client.get("/healthz").json()["version"]
    resp = client.post("/admin/reload", json={"run": str(tmp_path / "missing")})
    assert resp.status_code == 422 and resp.json()["field"] == "run"
    assert "missing" in resp.json()["error"] and "still serving" in resp.json()["error"]
    assert client.post("/admin/reload", json={"run": 3}).status_code == 422
    assert client.post("/admin/reload", json={"path": "x"}).json()["field"] == "path"
    assert client.get("/healthz").json()["version"] == before


class _StubIndex:
    """What the app needs of a DocumentIndex: `search(query, image, k)` → hits."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def search(self, query=None, image=None, k=5):
        from mmctr.retrieval.index.store import Hit

        self.calls.append((query, image, k))
        return [
            Hit(i + 1, f"doc{i}#1", f"doc{i}", 1, f"doc{i}.pdf", 1.0 / (i + 1), "text", "…") for i in range(k)
        ]


def test_search_through_an_index(runs, loader) -> None:
    from helpers_retrieval import page_png

    index = _StubIndex()
    app = create_app(Ranker(loader(runs[0]), loader), ServeSettings(), index=index)
    png = page_png("p")
    with TestClient(app, raise_server_exceptions=False) as c:
        resp = c.post("/v1/search", json={"query": "bridges", "k": 3})
        assert resp.status_code == 200, resp.text
        hits = resp.json()["hits"]
        assert [h["id"] for h in hits] == ["doc0#1", "doc1#1", "doc2#1"] and hits[0]["source"] == "doc0.pdf"
        resp = c.post("/v1/search", json={"image": base64.b64encode(png).decode()})
        assert resp.status_code == 200 and index.calls[-1] == (None, png, 5)
        for body, field in (
            ({"query": ""}, "query"),
            ({"query": 3}, "query"),
            ({"query": "x", "k": 0}, "k"),
            ({"query": "x", "k": "5"}, "k"),
            ({"image": "not base64!"}, "image"),
            ({"image": base64.b64encode(b"not an image").decode()}, "image"),
            ({"query": "x", "top": 3}, "top"),
        ):
            resp = c.post("/v1/search", json=body)
            assert resp.status_code == 422 and resp.json()["field"] == field, (body, resp.text)
    app.state.service.close()
    assert len(index.calls) == 2


@pytest.mark.slow
def test_search_through_a_real_index(runs, loader, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    from helpers_retrieval import page_png
    from mmctr.retrieval.index.sources import Record
    from mmctr.retrieval.index.store import DocumentIndex

    texts = ["The harbour bridge opened in 1932.", "Geese rested on the lake in October."]
    records = [
        Record(f"d{i}#1", f"d{i}", 1, f"d{i}.pdf", t, lambda i=i: page_png(f"d{i}"))
        for i, t in enumerate(texts)
    ]
    index = DocumentIndex(cache_dir=tmp_path / "cache", images=False)
    index.add(records)
    index.save(tmp_path / "idx")
    loaded = DocumentIndex.load(tmp_path / "idx", cache_dir=tmp_path / "cache")
    app = create_app(Ranker(loader(runs[0]), loader), ServeSettings(), index=loaded)
    with TestClient(app) as c:
        hits = c.post("/v1/search", json={"query": "when did the bridge open", "k": 1}).json()["hits"]
    app.state.service.close()
    assert hits[0]["id"] == "d0#1" and hits[0]["source"] == "d0.pdf"


# ----------------------------------------------------------------------------------------------
# a real uvicorn server in a thread


@contextlib.contextmanager
def _uvicorn_in_thread(app) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        app.state.service.close()


def test_real_server_ranks_reloads_under_load_and_counts(
    runs, loader, requests_, tiny_data, tmp_path
) -> None:
    a, b = loader(runs[0]), loader(runs[1])
    assert a.version != b.version
    # micro-batching on: the concurrent stream below goes through merged forwards
    app = create_app(Ranker(a, loader), ServeSettings(batch_window_ms=2.0, workers=1))
    with _uvicorn_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        r = requests_[0]
        answer = http.post("/v1/rank", json=_body(r)).json()
        _check_ranked(answer, a, r)
        assert answer["model_ms"] is None and answer["ms"] > 0  # a micro-batch's forward is shared

        statuses: list[int] = []
        versions: set[str] = set()
        stop = threading.Event()

        def stream(k: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as own:
                i = k
                while not stop.is_set() or i < k + 4:  # at least a few requests after the last reload
                    req = requests_[i % len(requests_)]
                    resp = own.post("/v1/rank", json=_body(req))
                    statuses.append(resp.status_code)
                    if resp.status_code == 200:
                        versions.add(resp.json()["version"])
                    i += 1

        threads = [threading.Thread(target=stream, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        first = http.post("/admin/reload", json={"run": str(runs[1])})
        assert first.status_code == 200 and first.json()["version"] == b.version, first.text
        time.sleep(0.2)
        back = http.post("/admin/reload", json={"run": str(runs[0])})
        assert back.status_code == 200 and back.json()["version"] == a.version
        stop.set()
        for t in threads:
            t.join(60)
        assert len(statuses) > 8 and set(statuses) == {200}, statuses  # no request failed or dropped
        assert versions == {a.version, b.version}

        http.post("/admin/reload", json={"run": str(runs[1])})
        for r in requests_[:3]:  # after the swap: run b's scores, exactly
            _check_ranked(http.post("/v1/rank", json=_body(r)).json(), b, r)
        assert http.post("/v1/rank", json={"candidates": []}).status_code == 422

        text = http.get("/metrics").text
        samples = _samples(text)
        assert samples[('mmctr_requests_total{route="/v1/rank",status="200"}')] >= len(statuses) + 4
        assert samples[('mmctr_requests_total{route="/v1/rank",status="422"}')] == 1
        assert samples['mmctr_request_duration_seconds_count{route="/v1/rank"}'] >= len(statuses) + 5
        assert samples["mmctr_model_reloads_total"] == 3
        assert samples["mmctr_rank_batched_requests_total"] >= len(statuses)
        assert samples["mmctr_model_duration_seconds_count"] == 0  # micro-batched: no forward of its own
        assert any(k.startswith("mmctr_model_info{") and f'version="{b.version}"' in k for k in samples)
        assert samples["mmctr_requests_in_flight"] == 1  # this scrape itself

        out = tmp_path / "lt"
        rc = main(
            ["loadtest", "--url", url, "--data", str(tiny_data), "--concurrency", "1", "4"]
            + ["--duration", "0.5", "--candidates", "20", "--warmup", "2", "--out", str(out)]
        )
        assert rc == 0
        result = json.loads((out / "loadtest.json").read_text())
        assert [lv["concurrency"] for lv in result["levels"]] == [1, 4]
        for lv in result["levels"]:
            assert lv["requests"] > 0 and lv["errors"] == 0 and lv["p50_ms"] <= lv["p99_ms"]
        assert result["server"]["version"] == b.version and (out / "loadtest.png").stat().st_size > 0
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


# ----------------------------------------------------------------------------------------------
# the command line


def test_loadtest_refuses_other_hosts_and_serve_a_missing_run(tmp_path: Path, capsys) -> None:
    for url in ("http://10.0.0.5:8000", "http://example.com", "https://127.0.0.1:8000"):
        with pytest.raises(ConfigError, match="--url"):
            parse_target(url)
    assert parse_target("http://localhost:8123").host == "127.0.0.1"
    assert parse_target("http://[::1]:8123").port == 8123
    assert main(["loadtest", "--url", "http://192.168.1.4:80", "--data", str(tmp_path)]) == 2
    assert "only targets this machine" in capsys.readouterr().err
    assert main(["serve", "--run", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_cli_server_reloads_on_sighup_and_drains_on_sigterm(runs, tmp_path: Path) -> None:
    """`mmctr serve` as its own process: SIGHUP reloads its run directory (replaced in place here),
    SIGTERM lets the request in flight finish."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mmctr.cli", "serve", "--run", str(run), "--port", str(port)]
    cmd += ["--max-candidates", "100000", "--precision", "fp32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    first = http.get("/healthz").json()["version"]
                    break
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.05)
            shutil.rmtree(run)
            shutil.copytree(runs[1], run)  # retrained in place
            proc.send_signal(signal.SIGHUP)
            for _ in range(600):
                if http.get("/healthz").json()["version"] != first:
                    break
                time.sleep(0.05)
            assert http.get("/healthz").json()["reloads"] == 1
            # a request in flight when SIGTERM arrives is answered: a long one (100,000 candidates),
            # seen in flight by /metrics before the signal is sent
            n = 100_000
            body = {"history": list(range(1, 60)), "candidates": [1 + i % 400 for i in range(n)]}
            answer: dict = {}
            sender = threading.Thread(target=lambda: answer.update(r=http.post("/v1/rank", json=body)))
            sender.start()
            with httpx.Client(base_url=url, timeout=30) as probe:
                while _samples(probe.get("/metrics").text)["mmctr_requests_in_flight"] < 2:
                    assert sender.is_alive(), "the long request ended before it was seen in flight"
            proc.send_signal(signal.SIGTERM)
            sender.join(60)
            assert answer["r"].status_code == 200 and len(answer["r"].json()["items"]) == n
        # uvicorn exits by re-raising the signal it captured, once in-flight requests are done
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_blocking_client_keeps_alive_reconnects_after_close_and_refuses_no_length() -> None:
    """The lean client of `mmctr bench --serving`'s paired overhead, against a scripted server."""
    from mmctr.serve.loadtest import BlockingConnection, ProtocolError

    replies = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext",  # on a new connection
        b"HTTP/1.1 200 OK\r\n\r\nno length",
    ]
    srv = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve() -> None:
        for conn_replies in (replies[:2], replies[2:]):
            conn, _ = srv.accept()
            accepted.append(conn)
            with conn:
                for reply in conn_replies:
                    conn.recv(65536)  # one request (small: one segment)
                    conn.sendall(reply)
                conn.recv(65536)  # until the client closes

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = BlockingConnection(parse_target(f"http://127.0.0.1:{srv.getsockname()[1]}"), timeout=10)
    try:
        assert client.request("POST", "/v1/rank", b"{}") == (200, b"ok")
        assert client.request("POST", "/v1/rank", b"{}") == (422, b"bad")  # then it closes
        assert client.request("GET", "/healthz") == (200, b"next")
        assert len(accepted) == 2
        with pytest.raises(ProtocolError, match="Content-Length"):
            client.request("GET", "/healthz")
    finally:
        client.close()
        srv.close()


def test_model_threads_hand_back_results_and_errors_and_survive_a_cancelled_wait() -> None:
    from mmctr.serve.ranker import ModelThreads

    threads = ModelThreads(2, torch_threads=1, name="test-model")
    done: list[int] = []

    def slow(i: int) -> int:
        time.sleep(0.05)
        done.append(i)
        return i

    async def scenario() -> None:
        assert await threads.run(lambda a, b: a + b, 2, 3) == 5
        assert await threads.run(torch.get_num_threads) == 1  # set on each model thread
        with pytest.raises(ValueError, match="bad input"):
            await threads.run(int, "bad input")
        waiting = asyncio.ensure_future(threads.run(slow, 1))
        await asyncio.sleep(0.01)
        waiting.cancel()  # the client went away: the job still ends, and the thread lives on
        assert await threads.run(slow, 2) == 2
        assert sorted(await asyncio.gather(*(threads.run(slow, i) for i in range(3, 7)))) == [3, 4, 5, 6]

    asyncio.run(scenario())
    gone = asyncio.new_event_loop()
    future = gone.create_future()
    gone.close()  # a job whose loop closed while it ran (a server stopping) ends quietly
    threads._jobs.put((gone, future, slow, (7,)))  # queued before shutdown: it runs to the end
    threads.shutdown()
    assert 1 in done and 7 in done and all(not t.is_alive() for t in threads._threads)
