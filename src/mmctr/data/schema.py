"""The MicroLens-1M MMCTR file layout and column schema, as published by the organisers.

Everything that reads or writes the format (the reader, the generator, the embedders) takes its
names and shapes from here, so that the layout is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUBDIR = "MicroLens_1M_x1"
SPLITS = ("train", "valid", "test")

SEQ_LEN = 100  # item_seq in the split files is fixed-length, left zero-padded
TAGS_LEN = 5  # item_tags is fixed-length, left zero-padded
EMB_DIM = 128  # item_emb_d128
N_LEVELS = 11  # likes_level / views_level take values 0..10
PAD_ID = 0

SPLIT_COLUMNS = ("user_id", "item_seq", "item_id", "likes_level", "views_level", "label")
ITEM_INFO_COLUMNS = ("item_id", "item_tags", "item_emb_d128")
ITEM_FEATURE_COLUMNS = ("item_id", "item_title", "item_tags", "likes_level", "views_level")
ITEM_SEQ_COLUMNS = ("user_id", "item_seq")

TRACKS = ("Task1", "Task2", "Task1&2")


@dataclass(frozen=True)
class Layout:
    """Paths of every file in a data root, laid out exactly as the challenge published them."""

    root: Path

    @property
    def dataset_dir(self) -> Path:
        return self.root / SUBDIR

    def split(self, name: str) -> Path:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.dataset_dir / f"{name}.parquet"

    @property
    def item_info(self) -> Path:
        return self.dataset_dir / "item_info.parquet"

    @property
    def item_feature(self) -> Path:
        return self.root / "item_feature.parquet"

    @property
    def item_seq(self) -> Path:
        return self.root / "item_seq.parquet"

    @property
    def item_emb(self) -> Path:
        return self.root / "item_emb.parquet"

    @property
    def images_dir(self) -> Path:
        return self.root / "item_images"

    @property
    def truth_dir(self) -> Path:
        """Ground truth written by the generator only; training never reads it."""
        return self.root / "truth"

    @property
    def test_labels(self) -> Path:
        return self.truth_dir / "test_labels.csv"

    @property
    def click_probability(self) -> Path:
        return self.truth_dir / "click_probability.parquet"


def image_path(images_dir: Path, item_id: int) -> Path:
    """Where the generator writes an item's cover. Readers must not rely on this naming alone:
    they parse the item id out of each file name (see encoders.images)."""
    return images_dir / f"{item_id}.jpg"
