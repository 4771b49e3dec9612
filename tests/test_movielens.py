"""`mmctr data movielens`: the converter on hand-made MovieLens folders whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmctr.cli import main
from mmctr.data.movielens import convert, level, read_movielens
from mmctr.data.reader import load_dataset
from mmctr.errors import DataError

MOVIES = """movieId,title,genres
10,Alpha (1990),Comedy|Drama
20,"Beta, The (1991)",Action
30,Gamma (1992),(no genres listed)
40,Delta (1993),Drama|Comedy|Action|Horror|Sci-Fi|Romance
50,Epsilon (1994),Drama
"""
# (user, movie, rating, time); listed out of time order on purpose. Users 1 and 2 rate two movies in
# the same second (t=100): neither is the other's history. Movie 50 is never rated (a cold item);
# user 3 rates first at t=500 (a cold user until then).
RATINGS = [
    (1, 10, 5.0, 100),
    (2, 40, 3.5, 300),
    (1, 20, 4.0, 100),
    (1, 30, 2.0, 200),
    (2, 10, 4.5, 150),
    (1, 40, 4.0, 400),
    (3, 20, 5.0, 500),
    (2, 20, 1.0, 600),
    (1, 30, 4.0, 700),
    (3, 10, 4.0, 800),
]


def write_csv_layout(root: Path) -> Path:
    root.mkdir()
    (root / "movies.csv").write_text(MOVIES)
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{m},{r},{t}" for u, m, r, t in RATINGS]
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    return root


def write_recbole_layout(root: Path) -> Path:
    root.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{m}\t{r}\t{t}" for u, m, r, t in RATINGS]
    (root / "ml-tiny.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += ["10\tAlpha\t1990\tComedy Drama", "20\tBeta\t1991\tAction", "30\tGamma\t1992\t"]
    items += ["40\tDelta\t1993\tDrama Comedy Action Horror Sci-Fi Romance", "50\tEpsilon\t1994\tDrama"]
    (root / "ml-tiny.item").write_text("\n".join(items) + "\n")
    return root


def write_ml1m_layout(root: Path) -> Path:
    root.mkdir()
    (root / "ratings.dat").write_text("".join(f"{u}::{m}::{r:g}::{t}\n" for u, m, r, t in RATINGS))
    movies = [
        "10::Alpha (1990)::Comedy|Drama",
        "20::Beta, The (1991)::Action",
        "30::Gamma (1992)::Drama",
        "40::Delta (1993)::Drama|Comedy|Action|Horror|Sci-Fi|Romance",
        "50::Epsilon (1994)::Drama",
    ]
    (root / "movies.dat").write_text("\n".join(movies) + "\n")
    return root


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ml")
    src = write_csv_layout(base / "ml-hand")
    convert(src, base / "data", fusion="random", progress=False, log=lambda *_: None)
    return base / "data"


def split_rows(root: Path, name: str) -> dict[str, list]:
    return pq.read_table(root / "MicroLens_1M_x1" / f"{name}.parquet").to_pydict()


def test_rows_in_time_order_split_by_time_never_future_in_train(converted: Path) -> None:
    rows = {s: split_rows(converted, s) for s in ("train", "valid", "test")}
    assert [len(rows[s]["item_id"]) for s in ("train", "valid", "test")] == [8, 1, 1]
    # dense ids follow original ids: movie 10 → 1, 20 → 2, 30 → 3, 40 → 4, 50 → 5
    assert rows["valid"]["user_id"] == [1] and rows["valid"]["item_id"] == [3]  # (1, 30, 4.0, 700)
    assert rows["test"]["user_id"] == [3] and rows["test"]["item_id"] == [1]  # (3, 10, 4.0, 800)
    train_pairs = list(zip(rows["train"]["user_id"], rows["train"]["item_id"], strict=True))
    # train in time order: t=100 (two, in listed order), 150, 200, 300, 400, 500, 600
    assert train_pairs == [(1, 1), (1, 2), (2, 1), (1, 3), (2, 4), (1, 4), (3, 2), (2, 2)]


def test_labels_are_rating_at_least_4(converted: Path) -> None:
    assert split_rows(converted, "train")["label"] == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    labels = (converted / "truth" / "test_labels.csv").read_text().splitlines()
    assert labels == ["ID,label", "0,1"]


def test_history_is_earlier_positives_only_left_padded(converted: Path) -> None:
    seqs = [s[-4:] for s in split_rows(converted, "train")["item_seq"]]
    assert len(split_rows(converted, "train")["item_seq"][0]) == 100
    assert seqs[0] == seqs[1] == [0, 0, 0, 0]  # same second: not each other's history
    assert seqs[3] == [0, 0, 1, 2]  # user 1 at t=200 liked movies 10, 20 before
    assert seqs[4] == [0, 0, 0, 1]  # user 2 at t=300: 10 liked at 150
    assert seqs[6] == [0, 0, 0, 0]  # user 3's first rating: a cold user
    assert seqs[7] == [0, 0, 0, 1]  # user 2's 3.5 for movie 40 is not a like
    assert split_rows(converted, "valid")["item_seq"][0][-4:] == [0, 1, 2, 4]
    assert split_rows(converted, "test")["item_seq"][0][-4:] == [0, 0, 0, 2]


def test_levels_count_only_earlier_ratings(converted: Path) -> None:
    train = split_rows(converted, "train")
    # movie 10 for user 2 at t=150: one earlier rating of it (positive) → level 1; the first
    # ratings of a movie see nothing → level 0
    assert train["views_level"][:3] == [0, 0, 1] and train["likes_level"][:3] == [0, 0, 1]
    assert train["likes_level"][5] == 0 and train["views_level"][5] == 1  # 40 at t=400: one 3.5 before
    assert level(np.array([0, 1, 2, 3, 1022, 1023, 10**6])).tolist() == [0, 1, 1, 2, 9, 10, 10]


def test_items_tags_and_cold_items(converted: Path) -> None:
    info = pq.read_table(converted / "MicroLens_1M_x1" / "item_info.parquet").to_pydict()
    # genres sorted: Action 1, Comedy 2, Drama 3, Horror 4, Romance 5, Sci-Fi 6; the first 5 kept
    assert info["item_tags"] == [
        [0] * 5,
        [0, 0, 0, 2, 3],
        [0, 0, 0, 0, 1],
        [0] * 5,
        [3, 2, 1, 4, 6],
        [0, 0, 0, 0, 3],
    ]
    feature = pq.read_table(converted / "item_feature.parquet").to_pydict()
    assert feature["item_title"][1] == "Beta, The (1991)"
    assert feature["views_level"][4] == 0  # movie 50 was never rated: cold
    data = load_dataset(converted)  # the MMCTR reader takes the converted root as it is
    assert data.items.n_items == 6 and len(data["train"]) == 8


@pytest.mark.parametrize("writer", [write_recbole_layout, write_ml1m_layout], ids=["recbole", "ml-1m"])
def test_other_layouts_read_the_same_ratings(writer, tmp_path: Path) -> None:
    ml = read_movielens(writer(tmp_path / "src"))
    csv = read_movielens(write_csv_layout(tmp_path / "csv"))
    for name in ("user", "item", "rating", "time"):
        np.testing.assert_array_equal(getattr(ml.ratings, name), getattr(csv.ratings, name))
    assert ml.movies.ids.tolist() == [10, 20, 30, 40, 50]
    assert ml.movies.genres[0] == ["Comedy", "Drama"]


def test_bad_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MovieLens layout"):
        read_movielens(tmp_path)
    src = write_csv_layout(tmp_path / "bad")
    (src / "ratings.csv").write_text("userId,movieId,stars,timestamp\n1,10,5,100\n")
    with pytest.raises(DataError, match="rating"):
        read_movielens(src)
    (src / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,five,100\n")
    with pytest.raises(DataError, match="rating"):
        read_movielens(src)


def test_cli_refuses_to_replace_what_it_did_not_write(tmp_path: Path, capsys) -> None:
    src = write_csv_layout(tmp_path / "src")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("user's file")
    assert (
        main(
            [
                "data",
                "movielens",
                "--source",
                str(src),
                "--out",
                str(out),
                "--fusion",
                "random",
                "--overwrite",
            ]
        )
        == 2
    )
    assert (out / "notes.txt").read_text() == "user's file"
    assert "not a data root from `mmctr data movielens`" in capsys.readouterr().err


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[1] / "docs" / "configs").glob("movielens_*.yaml")),
    ids=str,
)
def test_documented_movielens_configs_load(path: Path) -> None:
    from mmctr.config import resolve_run_config

    model = path.stem.removeprefix("movielens_")
    cfg = resolve_run_config(model, config_file=path)
    assert cfg.model == model and cfg.train.max_len == 16
