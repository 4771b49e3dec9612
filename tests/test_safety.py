"""Untrusted input is safe: a file mmctr reads never makes it touch something outside where it
should (image paths and zip members that escape the data folder, symlinks out of it), never runs
code (YAML tags, pickles), and never decodes a decompression bomb."""

from __future__ import annotations

import ast
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmctr.errors import ConfigError, DataError, MMCTRError, SubmissionError

SRC = Path(__file__).resolve().parents[1] / "src" / "mmctr"


def _png(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 99, 199)).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes that declare width x height pixels (900 M pixels: 2.7 GB decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def _parquet(path: Path, cols: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


# ----------------------------------------------------------------------------------------------
# Symlinks out of the data folder


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every data folder that a malicious link points at."""
    p = tmp_path / "outside" / "secret.png"
    p.parent.mkdir()
    p.write_bytes(_png())
    return p


def _m2kr(folder: Path, img: str) -> Path:
    from mmctr.retrieval.data import formats as F

    (folder / "query_images").mkdir(parents=True)
    (folder / "Challenge").mkdir()
    (folder / "query_images" / "0.png").write_bytes(_png())
    (folder / "Challenge" / "p0.png").write_bytes(_png())
    _parquet(folder / F.M2KR_QUERIES, {"question_id": ["0", "1"], "question": ["", "q"],
                                       "instruction": ["", ""], "img_path": ["0.png", img]})  # fmt: skip
    _parquet(
        folder / F.M2KR_PASSAGES,
        {"passage_id": ["p"], "passage_content": ["c"], "page_screenshot": ["p0.png"]},
    )
    return folder


def test_m2kr_image_symlinked_out_of_the_folder_is_refused(tmp_path: Path, secret: Path) -> None:
    from mmctr.retrieval.data import load

    folder = _m2kr(tmp_path / "M2KR", "link.png")
    (folder / "query_images" / "link.png").symlink_to(secret)
    with pytest.raises(DataError, match=r"img_path'.*row 1.*outside .*symlink out of the data folder"):
        load(folder)
    (folder / "query_images" / "link.png").unlink()
    (folder / "query_images" / "link.png").symlink_to(folder / "query_images" / "0.png")  # inside: fine
    assert load(folder).passages.queries[1].image_path.name == "link.png"


def test_mmdocir_page_image_symlinked_out_is_refused(tmp_path: Path, secret: Path) -> None:
    from mmctr.retrieval.data import formats as F
    from mmctr.retrieval.data import load

    folder = tmp_path / "m"
    _parquet(folder / F.MMDOCIR_PAGES, {
        "doc_name": ["a.pdf"], "passage_id": ["0"], "image_path": ["img/a.png"],
        "image_binary": pa.array([None], pa.binary()), "ocr_text": ["t"], "vlm_text": ["v"]})  # fmt: skip
    (folder / F.MMDOCIR_QUESTIONS).write_text(
        json.dumps({"question_id": "1", "question": "q", "doc_name": "a.pdf"})
    )
    (folder / "img").mkdir()
    (folder / "img" / "a.png").symlink_to(secret)
    docs = load(folder).docs
    with pytest.raises(DataError, match=r"image_path'.*row 0.*outside"):
        docs.pages.image(0)


def test_vidore_image_path_symlinked_out_is_refused(tmp_path: Path, secret: Path) -> None:
    from mmctr.retrieval.data import load

    folder = tmp_path / "v"
    struct_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    _parquet(folder / "corpus" / "test.parquet",
             {"corpus-id": ["a"], "image": pa.array([{"bytes": None, "path": "a.png"}], struct_t)})  # fmt: skip
    _parquet(folder / "queries" / "test.parquet", {"query-id": ["q"], "query": ["x"]})
    _parquet(folder / "qrels" / "test.parquet", {"query-id": ["q"], "corpus-id": ["a"], "score": [1]})
    (folder / "corpus" / "a.png").symlink_to(secret)
    docs = load(folder).docs
    with pytest.raises(DataError, match=r"'image'.*outside"):
        docs.pages.image(0)


def test_cover_symlinked_out_of_the_image_folder_is_refused(tmp_path: Path, secret: Path) -> None:
    from mmctr.encoders.image import list_images

    images = tmp_path / "item_images"
    images.mkdir()
    (images / "1.jpg").write_bytes(_png())
    (images / "2.jpg").symlink_to(images / "1.jpg")  # inside: fine
    assert sorted(list_images(images).paths) == [1, 2]
    (images / "3.jpg").symlink_to(secret)
    with pytest.raises(DataError, match=r"3.jpg: a symlink to .*outside"):
        list_images(images)


# ----------------------------------------------------------------------------------------------
# Zip members


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_members_escaping_are_never_extracted(tmp_path: Path) -> None:
    from mmctr.submission import read_submission

    d = tmp_path / "d"
    d.mkdir()
    good = b"ID,Task2\n0,0.5\n"
    z = _zip(
        d / "s.zip", {"../prediction.csv": good, "/abs/prediction.csv": good, "../../evil.sh": b"rm -rf ~"}
    )
    with pytest.raises(SubmissionError, match="no prediction.csv at its root"):
        read_submission(z)
    z = _zip(d / "t.zip", {"prediction.csv": good, "../../evil.sh": b"x"})
    assert read_submission(z)[0] == "Task2"  # read by name, in memory
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["d", "s.zip", "t.zip"]


def test_zip_bomb_is_refused_before_it_is_inflated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmctr.submission as sub

    z = _zip(tmp_path / "s.zip", {"prediction.csv": b"ID,Task2\n" + b"0,0.5\n" * 50_000})
    assert z.stat().st_size < 5_000
    monkeypatch.setattr(sub, "MAX_PREDICTION_BYTES", 100_000)
    with pytest.raises(SubmissionError, match=r"inflates to 300,009 bytes, more than 100,000"):
        sub.read_submission(z)


# ----------------------------------------------------------------------------------------------
# Decompression bombs


def test_decompression_bomb_cover_is_refused_without_decoding() -> None:
    from mmctr.encoders.image import ImageTransform

    t = ImageTransform(size=16, resize=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(DataError, match=r"7.jpg: (refused|30000x30000 pixels is more than)"):
        t(bomb_png(), "7.jpg")
    with pytest.raises(DataError, match=r"10000x10000 pixels is more than 89,478,485; refused"):
        t(bomb_png(10_000, 10_000), "7.jpg")  # PIL alone would only warn, and decode 300 MB
    assert t(_png((40, 30)), "7.jpg").shape == (3, 16, 16)


def test_decompression_bomb_page_is_refused() -> None:
    from mmctr.retrieval.data.read_common import image_problem

    assert "refused" in image_problem(bomb_png())
    assert "10000x10000 pixels is more than" in image_problem(bomb_png(10_000, 10_000))
    assert image_problem(_png()) is None


# ----------------------------------------------------------------------------------------------
# No code runs from data: YAML tags, pickles, eval


def test_yaml_with_python_tags_runs_nothing(tmp_path: Path) -> None:
    from mmctr.config import resolve_run_config

    marker = tmp_path / "ran"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"train: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_run_config("din", cfg)
    assert not marker.exists()


def test_run_directory_with_python_tags_runs_nothing(tmp_path: Path) -> None:
    from helpers import random_items
    from mmctr.config import resolve_run_config
    from mmctr.training.run_dir import build_model, load_run, save_run

    cfg = resolve_run_config("lr")
    items = random_items(4)
    run = save_run(tmp_path / "run", cfg, build_model(cfg, items), items, {}, {})
    marker = tmp_path / "ran"
    (run / "config.yaml").write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(MMCTRError, match=r"config.yaml: cannot be loaded"):
        load_run(run)
    assert not marker.exists()


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return ""


def _kw(call: ast.Call, key: str) -> object:
    for k in call.keywords:
        if k.arg == key and isinstance(k.value, ast.Constant):
            return k.value.value
    return None


def test_no_unsafe_loader_in_the_source() -> None:
    """Every torch.load uses weights_only=True; YAML is read with safe_load; no pickle/marshal
    loads, no eval/exec, no zip extraction, no np.load with allow_pickle=True."""
    problems = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree):
            name, where = _name(call.func), f"{path.relative_to(SRC)}:{call.lineno}"
            if name.endswith("torch.load") and _kw(call, "weights_only") is not True:
                problems.append(f"{where}: torch.load without weights_only=True")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
                problems.append(f"{where}: {name}")
            if name.split(".")[-1] in ("load", "loads") and name.split(".")[0] in (
                "pickle",
                "marshal",
                "dill",
                "cloudpickle",
            ):
                problems.append(f"{where}: {name}")
            if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
                problems.append(f"{where}: {name}")
            if name.endswith((".extractall", ".extract")) and "zip" in ast.unparse(call.func).lower():
                problems.append(f"{where}: {name}")
            if name.endswith("np.load") and _kw(call, "allow_pickle") is True:
                problems.append(f"{where}: np.load(allow_pickle=True)")
    assert problems == []


def test_the_scan_would_see_an_unsafe_call() -> None:
    """The scan above is not vacuous: each kind of unsafe call it looks for is found."""
    snippet = "torch.load(p)\nyaml.load(s)\npickle.loads(b)\neval(x)\nnp.load(f, allow_pickle=True)\n"
    names = [_name(c.func) for c in _calls(ast.parse(snippet))]
    assert names == ["torch.load", "yaml.load", "pickle.loads", "eval", "np.load"]
