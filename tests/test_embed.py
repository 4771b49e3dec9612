"""`mmctr embed` end to end on tiny synthetic data: alignment by item id with shuffled, renamed,
missing and broken cover files; the output schema; the cache; the command line."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmctr.cli import main
from mmctr.data.reader import load_dataset, read_item_info
from mmctr.embed import EmbedConfig, embed, json_path
from mmctr.encoders import EncoderOptions, build_encoder
from mmctr.encoders.base import Encoder, ImageEncoder, TextEncoder
from mmctr.encoders.image import list_images
from mmctr.encoders.runner import ModalityFeatures, check_alignment, encode_images
from mmctr.errors import MMCTRError

FAST = EncoderOptions(image_size=32)  # tiny covers are 32 px; keeps the CNN cheap


def _solid(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.array(rgb, np.uint8), (32, 32, 1))).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def messy_images(tiny_data: Path, tmp_path: Path) -> tuple[Path, dict[str, list[int]]]:
    """A copy of tiny data whose covers were written in shuffled order, half of them renamed to
    zero-padded ids, five deleted, one corrupt, two replaced by a red and two by a blue image,
    plus a stray non-image file."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root, ignore=shutil.ignore_patterns("item_images"))
    files = sorted((tiny_data / "item_images").iterdir())
    rng = np.random.default_rng(7)
    rng.shuffle(files)
    ids = [int(f.stem) for f in files]
    groups = {"missing": ids[:5], "red": ids[5:7], "blue": ids[7:9], "corrupt": ids[9:10]}
    dst = root / "item_images"
    dst.mkdir()
    for f, i in zip(files, ids, strict=True):
        if i in groups["missing"]:
            continue
        out = dst / (f"{i:06d}.jpg" if i % 2 else f"{i}.jpg")
        if i in groups["red"]:
            out.write_bytes(_solid((230, 30, 30)))
        elif i in groups["blue"]:
            out.write_bytes(_solid((30, 30, 230)))
        elif i in groups["corrupt"]:
            out.write_bytes(b"this is not a JPEG")
        else:
            shutil.copy(f, out)
    (dst / "README.txt").write_text("not a cover")
    return root, groups


def test_alignment_by_item_id_with_shuffled_missing_and_broken_files(messy_images, tmp_path: Path):
    root, g = messy_images
    out = tmp_path / "emb" / "item_info.parquet"
    report = embed(
        EmbedConfig(
            data=root, out=out, fusion="image", encoder=FAST, cache_dir=tmp_path / "cache", progress=False
        ),
        log=lambda _msg: None,
    )
    # counted and reported, not silent
    saved = json.loads(json_path(out).read_text())
    for r in (report, saved):
        assert r["images"]["missing"] == 5 and r["images"]["unreadable"] == 1
        assert r["images"]["unrecognised_files"] == 1 and r["images"]["fallback"] == "mean"
        assert r["alignment"]["image"]["checked"] == 8 and r["alignment"]["image"]["min_cosine"] > 0.98
    assert set(saved) >= {"encoders", "fusion", "seconds", "images", "alignment"}
    assert saved["fusion"]["variance_kept"] > 0 and saved["seconds"]["total"] > 0

    emb = read_item_info(out).emb
    red, blue = g["red"], g["blue"]
    np.testing.assert_allclose(emb[red[0]], emb[red[1]], atol=1e-5)  # same picture, same vector
    np.testing.assert_allclose(emb[blue[0]], emb[blue[1]], atol=1e-5)
    assert emb[red[0]] @ emb[blue[0]] < 0.99
    fallback_rows = emb[g["missing"] + g["corrupt"]]
    assert np.allclose(fallback_rows, fallback_rows[0], atol=1e-6)  # all got the same (mean) vector

    # the raw vector on the red items' rows is the encoding of the red picture itself
    enc = build_encoder("effnet", "image", FAST)
    some = np.array(sorted(red + blue + g["missing"] + g["corrupt"]))  # 10 ids: cheap to encode
    feats = encode_images(enc, list_images(root / "item_images"), some, len(emb), None, False)
    red_vec = enc.encode(enc.transform()(_solid((230, 30, 30)))[None])[0]
    for i in red:
        np.testing.assert_allclose(feats.matrix[i], red_vec, rtol=1e-4, atol=1e-4)
    assert feats.stats.missing == 5 and feats.stats.unreadable == 1


def test_check_alignment_catches_rows_in_listing_order(tiny_data: Path):
    enc = build_encoder("effnet", "image", FAST)
    listing = list_images(tiny_data / "item_images")
    ids = np.arange(1, 41)
    feats = encode_images(enc, listing, ids, 41, None, False)
    inputs = {i: str(p) for i, p in listing.paths.items()}
    assert check_alignment(enc, feats, inputs, n=6)["checked"] == 6
    perm = np.r_[0, np.random.default_rng(0).permutation(ids)]  # rows assigned in some other order
    shuffled = ModalityFeatures(feats.matrix[perm], feats.present, feats.stats, feats.encoded_ids)
    with pytest.raises(MMCTRError, match="alignment check failed"):
        check_alignment(enc, shuffled, inputs, n=6)


@pytest.fixture(scope="module")
def embedded(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """One default run (concat_pca) on tiny data: (cache dir, output file, report)."""
    d = tmp_path_factory.mktemp("embedded")
    out = d / "out" / "info.parquet"
    cfg = EmbedConfig(data=tiny_data, out=out, encoder=FAST, cache_dir=d / "cache", progress=False)
    return d / "cache", out, embed(cfg, log=lambda _msg: None)


def test_output_schema_and_training_reader(tiny_data: Path, embedded):
    _, out, report = embedded
    t = pq.read_table(out)
    assert t.schema.field("item_id").type == pa.int64()
    assert t.schema.field("item_tags").type == pa.list_(pa.int64())
    assert t.schema.field("item_emb_d128").type == pa.list_(pa.float32())
    src = pq.read_table(tiny_data / "MicroLens_1M_x1" / "item_info.parquet")
    assert t.num_rows == src.num_rows == report["rows"]
    assert t.column("item_id").to_pylist() == list(range(t.num_rows))
    assert t.column("item_tags").to_pylist() == src.column("item_tags").to_pylist()
    emb = np.asarray(t.column("item_emb_d128").to_pylist(), dtype=np.float32)
    assert emb.shape == (t.num_rows, 128) and np.all(emb[0] == 0)
    assert np.allclose(np.linalg.norm(emb[1:], axis=1), 1, atol=1e-5)
    assert not list(out.parent.glob(".*.tmp"))  # written by rename, no leftovers
    assert (
        report["alignment"]["text"]["checked"] == 8
        and report["alignment"]["written_file"]["item_id_equals_row"]
    )
    data = load_dataset(tiny_data, splits=("valid",), item_info=out)
    np.testing.assert_array_equal(data.items.emb, emb)


def test_second_run_reads_the_cache_and_loads_no_model(
    tiny_data: Path, embedded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache, first_out, first = embedded
    assert all(first["encoders"][m]["encoded"] > 0 for m in ("text", "image"))
    calls = {"encode": 0, "load": 0}

    def counting(fn, what):
        def wrapper(self, *a, **kw):
            calls[what] += 1
            return fn(self, *a, **kw)

        return wrapper

    monkeypatch.setattr(TextEncoder, "encode", counting(TextEncoder.encode, "encode"))
    monkeypatch.setattr(ImageEncoder, "encode", counting(ImageEncoder.encode, "encode"))
    monkeypatch.setattr(Encoder, "load", counting(Encoder.load, "load"))
    out = tmp_path / "b.parquet"
    cfg = EmbedConfig(
        data=tiny_data, out=out, fusion="pca_concat", encoder=FAST, cache_dir=cache, progress=False
    )
    second = embed(cfg, log=lambda _m: None)
    assert calls == {"encode": 0, "load": 0}  # not one batch encoded, no model even loaded
    for m in ("text", "image"):
        s, f = second["encoders"][m], first["encoders"][m]
        assert s["encoded"] == 0 and s["from_cache"] == f["from_cache"] + f["encoded"]
        assert s["cache_key"] == f["cache_key"]
    assert "cache" in second["alignment"]["image"]["note"]
    assert {p.name.split("-")[0] for p in cache.iterdir()} == {"text", "image"}
    # same raw inputs, another fusion: a different embedding
    assert not np.allclose(read_item_info(first_out).emb, read_item_info(out).emb)


def test_cli_embed_and_errors(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "rand.parquet"
    rc = main(["embed", "--data", str(tiny_data), "--out", str(out), "--fusion", "random", "--no-progress"])
    assert rc == 0 and out.exists() and json_path(out).exists()
    assert "written to" in capsys.readouterr().out
    rc = main(["embed", "--data", str(tiny_data), "--out", str(out), "--fusion", "random"])
    assert rc == 2 and "pass --overwrite" in capsys.readouterr().err  # an existing --out is kept
    rc = main(["embed", "--data", str(tiny_data), "--out", str(out), "--fusion", "nope", "--overwrite"])
    assert rc == 2 and "unknown; available" in capsys.readouterr().err
    rc = main(
        ["embed", "--data", str(tmp_path / "absent"), "--out", str(out), "--fusion", "random", "--overwrite"]
    )
    assert rc == 2 and "absent" in capsys.readouterr().err
    assert main(["embed", "--list"]) == 0 and "coclick" in capsys.readouterr().out
