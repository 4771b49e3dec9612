"""MovieLens ratings → the MMCTR layout: real behaviour data for Task 2.

Readers for the published MovieLens layouts (the recbole atomic files of ml-100k shipped inside the
`recbole` wheel, the original ml-100k `u.data`/`u.item`, ml-1m `ratings.dat`/`movies.dat`, and
ml-latest-small / ml-25m `ratings.csv`/`movies.csv`) give one table of ratings and one of movies.
`convert` turns them into a data root that every mmctr command reads like MicroLens:

- One row per rating (user, movie, time). label = 1 when the rating is >= 4 (`POSITIVE_RATING`).
- item_seq: the movies the user rated >= 4 strictly before this rating's timestamp (ratings of the
  same second are never each other's history), time-ordered, most recent last, the last 100 kept,
  left zero-padded; rows whose user liked nothing before have an all-padding history (cold users).
- A global time split, as in production: the ratings are ordered by time and the first 80% are
  train, the next 10% valid, the last 10% test, so no train rating is later than a valid one and no
  valid rating later than a test one.
- likes_level / views_level of a row: how many positive / all ratings its movie had strictly before
  the row's time, as floor(log2(1 + count)) capped at 10 — popularity known at that moment, never
  counted from the future. item_feature's levels are those at the end of the train period.
- item_tags: the movie's genres (up to 5, in the listed order; tag id = 1 + position of the genre in
  the sorted genre vocabulary); item_title: the title as published.
- item_emb_d128: the titles through the Task-1 pipeline (`mmctr embed`, fusion `text` by default:
  MiniLM, PCA to 128).
- Users and movies get dense ids 1..U and 1..N in the order of their original ids.
- truth/test_labels.csv holds the test labels (header ID,label) for `mmctr score`; there is no true
  click probability for real data, so no oracle AUC.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmctr.data.schema import EMB_DIM, N_LEVELS, SEQ_LEN, TAGS_LEN, Layout
from mmctr.data.synth.writer import SPLIT_SCHEMA, _fixed_lists, _write, left_padded, write_test_labels
from mmctr.errors import DataError
from mmctr.outputs import MOVIELENS_DATA, check_out, move_into_place, temp_beside

POSITIVE_RATING = 4.0
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
_ROW_GROUP = 1 << 16


@dataclass
class Ratings:
    user: np.ndarray  # (R,) original user ids
    item: np.ndarray  # (R,) original movie ids
    rating: np.ndarray  # (R,) float
    time: np.ndarray  # (R,) int64 seconds


@dataclass
class Movies:
    ids: np.ndarray  # (M,) original movie ids
    titles: list[str]
    genres: list[list[str]]


@dataclass
class MovieLens:
    layout: str  # which published layout was read
    ratings: Ratings
    movies: Movies
    files: list[str]


# ----------------------------------------------------------------------------------------------
# readers of the published layouts


def _ints(path: Path, col: str, values: list[str]) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).astype(np.int64)
    except ValueError as err:
        raise DataError(path, col, f"expected integers: {err}") from None


def _floats(path: Path, col: str, values: list[str]) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except ValueError as err:
        raise DataError(path, col, f"expected numbers: {err}") from None
    if not np.isfinite(out).all():
        raise DataError(path, col, "holds NaN or infinite values")
    return out


def _columns(path: Path, rows: list[list[str]], names: tuple[str, ...]) -> list[list[str]]:
    for i, r in enumerate(rows):
        if len(r) < len(names):
            raise DataError(
                path, None, f"line {i + 1} has {len(r)} fields; expected {len(names)}: {', '.join(names)}"
            )
    return [[r[k] for r in rows] for k in range(len(names))]


def _ratings(path: Path, rows: list[list[str]], names: tuple[str, str, str, str]) -> Ratings:
    if not rows:
        raise DataError(path, None, "holds no ratings")
    u, i, r, t = _columns(path, rows, names)
    return Ratings(
        _ints(path, names[0], u),
        _ints(path, names[1], i),
        _floats(path, names[2], r),
        _ints(path, names[3], t),
    )


def _read_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    try:
        return path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1").splitlines()
    except OSError as err:
        raise DataError(path, None, f"cannot be read: {err}") from None


def _recbole(src: Path) -> MovieLens:
    """recbole atomic files: NAME.inter (user_id:token, item_id:token, rating:float,
    timestamp:float) and NAME.item (item_id:token, movie_title:token_seq, class:token_seq)."""
    inter = sorted(src.glob("*.inter"))[0]
    item_files = sorted(src.glob("*.item"))
    if not item_files:
        raise DataError(src, None, f"has {inter.name} but no .item file with the movie titles and genres")
    item = item_files[0]

    def table(path: Path, need: tuple[str, ...]) -> list[list[str]]:
        lines = [ln.split("\t") for ln in _read_lines(path) if ln.strip()]
        header = [h.split(":")[0] for h in lines[0]] if lines else []
        missing = [n for n in need if n not in header]
        if missing:
            raise DataError(
                path, missing[0], f"header lacks {', '.join(missing)}; it has {', '.join(header)}"
            )
        idx = [header.index(n) for n in need]
        return [[r[k] if k < len(r) else "" for k in idx] for r in lines[1:]]

    ratings = _ratings(
        inter,
        table(inter, ("user_id", "item_id", "rating", "timestamp")),
        ("user_id", "item_id", "rating", "timestamp"),
    )
    rows = table(item, ("item_id", "movie_title", "class"))
    ids = _ints(item, "item_id", [r[0] for r in rows])
    return MovieLens(
        "recbole atomic files",
        ratings,
        Movies(ids, [r[1] for r in rows], [r[2].split() for r in rows]),
        [str(inter), str(item)],
    )


def _ml100k(src: Path) -> MovieLens:
    """The original ml-100k: u.data (user, item, rating, time; tabs) and u.item (id|title|date|
    video date|url|19 genre flags), genre names from u.genre."""
    data, item = src / "u.data", src / "u.item"
    rows = [ln.split("\t") for ln in _read_lines(data) if ln.strip()]
    ratings = _ratings(data, rows, ("user_id", "item_id", "rating", "timestamp"))
    names = (
        [ln.split("|")[0] for ln in _read_lines(src / "u.genre", "latin-1") if ln.strip()]
        if (src / "u.genre").exists()
        else []
    )
    ids, titles, genres = [], [], []
    for n, ln in enumerate(_read_lines(item, "latin-1")):
        if not ln.strip():
            continue
        f = ln.split("|")
        if len(f) < 6:
            raise DataError(
                item,
                None,
                f"line {n + 1} has {len(f)} fields; expected id|title|date|video date|url|genre flags",
            )
        ids.append(f[0])
        titles.append(f[1])
        flags = f[5:]
        genres.append(
            [names[k] if k < len(names) else f"genre{k}" for k, v in enumerate(flags) if v.strip() == "1"]
        )
    return MovieLens(
        "ml-100k", ratings, Movies(_ints(item, "movie id", ids), titles, genres), [str(data), str(item)]
    )


def _ml1m(src: Path) -> MovieLens:
    """ml-1m: ratings.dat (UserID::MovieID::Rating::Timestamp) and movies.dat
    (MovieID::Title::Genres, genres joined by |)."""
    data, item = src / "ratings.dat", src / "movies.dat"
    rows = [ln.split("::") for ln in _read_lines(data, "latin-1") if ln.strip()]
    ratings = _ratings(data, rows, ("UserID", "MovieID", "Rating", "Timestamp"))
    mrows = [ln.split("::") for ln in _read_lines(item, "latin-1") if ln.strip()]
    ids, titles, genres = _columns(item, mrows, ("MovieID", "Title", "Genres"))
    return MovieLens(
        "ml-1m",
        ratings,
        Movies(_ints(item, "MovieID", ids), titles, [g.split("|") for g in genres]),
        [str(data), str(item)],
    )


def _csv_rows(path: Path, need: tuple[str, ...]) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            missing = [n for n in need if n not in header]
            if missing:
                raise DataError(
                    path, missing[0], f"header lacks {', '.join(missing)}; it has {', '.join(header)}"
                )
            idx = [header.index(n) for n in need]
            return [[r[k] for k in idx] for r in reader if len(r) >= len(header)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(path, None, f"cannot be read as CSV: {err}") from None


def _mlcsv(src: Path) -> MovieLens:
    """ml-latest-small / ml-latest / ml-20m / ml-25m: ratings.csv (userId,movieId,rating,timestamp)
    and movies.csv (movieId,title,genres; genres joined by |, "(no genres listed)" for none)."""
    data, item = src / "ratings.csv", src / "movies.csv"
    need = ("userId", "movieId", "rating", "timestamp")
    ratings = _ratings(data, _csv_rows(data, need), need)
    rows = _csv_rows(item, ("movieId", "title", "genres"))
    genres = [[g for g in r[2].split("|") if g and g != "(no genres listed)"] for r in rows]
    return MovieLens(
        "ml-latest / ml-20m / ml-25m",
        ratings,
        Movies(_ints(item, "movieId", [r[0] for r in rows]), [r[1] for r in rows], genres),
        [str(data), str(item)],
    )


def read_movielens(src: Path | str) -> MovieLens:
    """Read whichever published MovieLens layout `src` holds; a named error when it holds none."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(src, None, "not a directory; --source names a MovieLens folder (e.g. ml-100k/)")
    if any(src.glob("*.inter")):
        return _recbole(src)
    if (src / "u.data").exists() and (src / "u.item").exists():
        return _ml100k(src)
    if (src / "ratings.dat").exists() and (src / "movies.dat").exists():
        return _ml1m(src)
    if (src / "ratings.csv").exists() and (src / "movies.csv").exists():
        return _mlcsv(src)
    raise DataError(
        src,
        None,
        "holds no MovieLens layout mmctr knows: expected NAME.inter + NAME.item (recbole), u.data + u.item "
        "(ml-100k), ratings.dat + movies.dat (ml-1m), or ratings.csv + movies.csv (ml-latest, ml-25m)",
    )


# ----------------------------------------------------------------------------------------------
# conversion


def _dense(values: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """1-based dense ids of `values` within the sorted unique `universe`."""
    return np.searchsorted(universe, values).astype(np.int64) + 1


def _before_counts(key: np.ndarray, t: np.ndarray, *adds: np.ndarray) -> list[np.ndarray]:
    """For each event and each of `adds`, the sum of that array over earlier events (strictly earlier
    time) of the same key. One sort serves every array."""
    order = np.lexsort((np.arange(len(key)), t, key))
    k, tt = key[order], t[order]
    new_key = np.r_[True, k[1:] != k[:-1]]
    new_group = new_key | np.r_[True, tt[1:] != tt[:-1]]
    first_of_group = np.maximum.accumulate(np.where(new_group, np.arange(len(k)), 0))
    first_of_key = np.maximum.accumulate(np.where(new_key, np.arange(len(k)), 0))
    sums = []
    for add in adds:
        a = add[order].astype(np.int64)
        cum = np.cumsum(a) - a  # sum over every event before this position (all keys)
        out = np.empty(len(k), dtype=np.int64)
        out[order] = cum[first_of_group] - cum[first_of_key]
        sums.append(out)
    return sums


def level(count: np.ndarray) -> np.ndarray:
    """floor(log2(1 + count)) capped at N_LEVELS - 1: 0 for an unseen movie, 10 from 1,023 on."""
    return np.minimum(np.floor(np.log2(1.0 + count)), N_LEVELS - 1).astype(np.int64)


@dataclass
class Converted:
    user: np.ndarray  # (R,) dense user id
    item: np.ndarray  # (R,) dense item id
    time: np.ndarray
    label: np.ndarray  # (R,) 0/1
    likes: np.ndarray  # (R,) level of the item's positives before the row
    views: np.ndarray  # (R,) level of the item's ratings before the row
    split: np.ndarray  # (R,) 0 train, 1 valid, 2 test
    like_items: np.ndarray  # every positive's item, in (user, time) order
    hist_end: np.ndarray  # (R,) exclusive end of the row's history in like_items
    hist_len: np.ndarray  # (R,) full history length (before the SEQ_LEN cut)


def build_rows(ml: MovieLens) -> tuple[Converted, np.ndarray, np.ndarray]:
    """The rows of the converted data set; also the sorted original user and movie ids."""
    r = ml.ratings
    users = np.unique(r.user)
    movies = np.unique(np.concatenate([ml.movies.ids, r.item]))
    u, i = _dense(r.user, users), _dense(r.item, movies)
    y = (r.rating >= POSITIVE_RATING).astype(np.int64)
    n = len(u)

    # time split: the first 80% of ratings by time are train, then valid, then test
    by_time = np.lexsort((np.arange(n), r.time))
    split = np.empty(n, dtype=np.int64)
    cut1 = int(round(n * SPLIT_FRACTIONS[0]))
    cut2 = int(round(n * (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])))
    split[by_time[:cut1]], split[by_time[cut1:cut2]], split[by_time[cut2:]] = 0, 1, 2

    # history: the user's positives strictly before the row's time, in (user, time) order
    order = np.lexsort((np.arange(n), r.time, u))
    liked_sorted = y[order]
    like_items = i[order][liked_sorted == 1]
    (likes_before,) = _before_counts(u, r.time, y)
    item_pos, item_all = _before_counts(i, r.time, y, np.ones(n, dtype=np.int64))
    # where each user's positives start in like_items: the positives before the user's first event
    us = u[order]
    new_user = np.r_[True, us[1:] != us[:-1]]
    start_pos = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    pos_cum = np.cumsum(liked_sorted) - liked_sorted
    user_like_start = np.empty(n, dtype=np.int64)
    user_like_start[order] = pos_cum[start_pos]
    hist_end = user_like_start + likes_before

    conv = Converted(
        user=u,
        item=i,
        time=r.time,
        label=y,
        likes=level(item_pos),
        views=level(item_all),
        split=split,
        like_items=like_items,
        hist_end=hist_end,
        hist_len=likes_before,
    )
    return conv, users, movies


def padded(conv: Converted, rows: np.ndarray) -> np.ndarray:
    """(len(rows), SEQ_LEN) histories, the last SEQ_LEN positives, left zero-padded."""
    return left_padded(conv.like_items, conv.hist_end[rows], conv.hist_len[rows])


def _write_split(path: Path, conv: Converted, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, SPLIT_SCHEMA, compression="zstd") as writer:
        for lo in range(0, max(len(rows), 1), _ROW_GROUP):
            rr = rows[lo : lo + _ROW_GROUP]
            table = pa.Table.from_arrays(
                [
                    pa.array(conv.user[rr], pa.int64()),
                    _fixed_lists(padded(conv, rr), SEQ_LEN),
                    pa.array(conv.item[rr], pa.int64()),
                    pa.array(conv.likes[rr], pa.int64()),
                    pa.array(conv.views[rr], pa.int64()),
                    pa.array(conv.label[rr].astype(np.float64), pa.float64()),
                ],
                schema=SPLIT_SCHEMA,
            )
            writer.write_table(table, row_group_size=_ROW_GROUP)


def item_tables(ml: MovieLens, movies: np.ndarray) -> tuple[np.ndarray, list[str], list[str]]:
    """(N + 1, 5) left-padded tag ids (row 0 padding), the titles of items 1..N, the genre vocabulary."""
    vocab = sorted({g for gs in ml.movies.genres for g in gs})
    gid = {g: k + 1 for k, g in enumerate(vocab)}
    tags = np.zeros((movies.size + 1, TAGS_LEN), dtype=np.int64)
    titles = [""] * movies.size
    rows = _dense(ml.movies.ids, movies) - 1
    for row, title, gs in zip(rows.tolist(), ml.movies.titles, ml.movies.genres, strict=True):
        titles[row] = title
        ids = [gid[g] for g in gs][:TAGS_LEN]
        if ids:
            tags[row + 1, TAGS_LEN - len(ids) :] = ids
    return tags, titles, vocab


def convert(
    src: Path | str,
    out: Path | str,
    fusion: str = "text",
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Convert the MovieLens folder `src` into the MMCTR data root `out` (written to a temporary
    folder beside it, then renamed). Returns the summary written to out/conversion.json."""
    from mmctr.embed import EmbedConfig, embed

    t0 = time.perf_counter()
    out = Path(out)
    check_out(out, MOVIELENS_DATA, overwrite)
    ml = read_movielens(src)
    log(f"read {len(ml.ratings.user):,} ratings and {len(ml.movies.ids):,} movies ({ml.layout}) from {src}")
    conv, users, movies = build_rows(ml)
    tags, titles, vocab = item_tables(ml, movies)

    tmp = temp_beside(out)
    tmp.mkdir()
    try:
        layout = Layout(tmp)
        counts: dict[str, Any] = {}
        for k, name in enumerate(("train", "valid", "test")):
            rows = np.flatnonzero(conv.split == k)
            rows = rows[np.lexsort((rows, conv.time[rows]))]  # time order within a split
            _write_split(layout.split(name), conv, rows)
            counts[name] = {
                "rows": int(rows.size),
                "positive_rate": float(conv.label[rows].mean()) if rows.size else 0.0,
                "users": int(np.unique(conv.user[rows]).size),
                "empty_history_rows": int((conv.hist_len[rows] == 0).sum()),
                "median_history": float(np.median(np.minimum(conv.hist_len[rows], SEQ_LEN)))
                if rows.size
                else 0.0,
                "from": int(conv.time[rows].min()) if rows.size else None,
                "to": int(conv.time[rows].max()) if rows.size else None,
            }
            if name == "test":
                (tmp / "truth").mkdir()
                write_test_labels(tmp / "truth" / "test_labels.csv", conv.label[rows])
        train = conv.split == 0
        for name, k in (("valid", 1), ("test", 2)):
            rows = conv.split == k
            counts[name]["cold_item_rows"] = int((~np.isin(conv.item[rows], conv.item[train])).sum())
            counts[name]["new_user_rows"] = int((~np.isin(conv.user[rows], conv.user[train])).sum())

        # item_info with a placeholder embedding, item_feature with titles and end-of-train levels
        n_rows = movies.size + 1
        _write(
            pa.Table.from_arrays(
                [
                    pa.array(np.arange(n_rows), pa.int64()),
                    _fixed_lists(tags, TAGS_LEN),
                    _fixed_lists(np.zeros((n_rows, EMB_DIM), np.float32), EMB_DIM),
                ],
                names=["item_id", "item_tags", "item_emb_d128"],
            ),
            layout.item_info,
        )
        pos_train = np.bincount(conv.item[train], weights=conv.label[train], minlength=n_rows)
        all_train = np.bincount(conv.item[train], minlength=n_rows)
        _write(
            pa.Table.from_arrays(
                [
                    pa.array(np.arange(1, n_rows), pa.int64()),
                    pa.array(titles, pa.string()),
                    _fixed_lists(tags[1:], TAGS_LEN),
                    pa.array(level(pos_train[1:]), pa.int64()),
                    pa.array(level(all_train[1:]), pa.int64()),
                ],
                names=["item_id", "item_title", "item_tags", "likes_level", "views_level"],
            ),
            layout.item_feature,
        )
        # item_seq: each user's positives up to the end of the train period
        end = conv.time[train].max() if train.any() else 0
        order = np.lexsort((np.arange(len(conv.user)), conv.time, conv.user))
        keep = order[(conv.label[order] == 1) & (conv.time[order] <= end)]
        per_user = np.bincount(conv.user[keep], minlength=users.size + 1)[1:]
        _write(
            pa.Table.from_arrays(
                [
                    pa.array(np.arange(1, users.size + 1), pa.int64()),
                    pa.ListArray.from_arrays(
                        pa.array(np.r_[0, np.cumsum(per_user)].astype(np.int32)),
                        pa.array(conv.item[keep], pa.int64()),
                    ),
                ],
                names=["user_id", "item_seq"],
            ),
            layout.item_seq,
        )

        log(f"embedding {movies.size:,} titles (fusion {fusion})")
        report = embed(
            EmbedConfig(data=tmp, out=layout.item_info, fusion=fusion, progress=progress, overwrite=True),
            log=log,
        )
        summary = {
            "source": str(Path(src).resolve()),
            "layout": ml.layout,
            "files": ml.files,
            "ratings": int(len(conv.user)),
            "users": int(users.size),
            "items": int(movies.size),
            "genres": vocab,
            "positive_rating": POSITIVE_RATING,
            "split_fractions": list(SPLIT_FRACTIONS),
            "history": f"positives strictly before the row's time, last {SEQ_LEN}, left zero-padded",
            "levels": "floor(log2(1 + the movie's positive / all ratings strictly before the row)), capped at 10",
            "splits": counts,
            "item_emb_d128": {"fusion": fusion, "encoders": report.get("encoders", {})},
            "seconds": time.perf_counter() - t0,
        }
        (tmp / "conversion.json").write_text(json.dumps(summary, indent=2) + "\n")
        move_into_place(tmp, out, MOVIELENS_DATA, overwrite)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["out"] = str(out)
    return summary
