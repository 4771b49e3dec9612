"""Instance-level matching: is the query photo itself inside the passage's screenshot?

Local features (SIFT by default, ORB with `local_features="orb"`; OpenCV) of the query photo are
matched to those of a screenshot (Lowe's ratio test), and RANSAC fits one similarity transform
(shift, rotation, scale) to them: the score is the number of matches that agree on it, counted only
when the transform is plausible for a photo pasted into a page (scale 1/8-4, rotation within 30
degrees). A pasted, scaled, slightly rotated or recoloured copy keeps many such inliers; a different
photo keeps a few by chance, hence `min_inliers`. This is the high-precision signal the challenge's
winners added beside embeddings.

Why similarity and not a full homography: a pasted thumbnail is a similarity of the photo; with
eight degrees of freedom RANSAC fitted degenerate homographies to chance matches on text lines, and
rejecting those also rejected true matches (measured on the generator: the plausibility check on
homographies zeroed 5 of 20 true pairs). Why SIFT by default: on the generator's flat-coloured
photos ORB (even with a low FAST threshold) verified 5 of 40 tiny-scale queries, SIFT 28, with
fewer chance inliers on wrong pages.

Matching every screenshot costs too much, so only the `match_candidates` best passages of the
`image` retriever are verified: verified ones (most inliers first) come first, the rest keep the
image order, and the image order continues below them. Screenshot features are computed once, at
index time (SIFT descriptors stored as uint8: their values are integers 0-255). MMDocIR: the same
stated fallback as `image` (dense text).
"""

from __future__ import annotations

import numpy as np

from mmctr.retrieval.data.types import DocSet, PassageSet
from mmctr.retrieval.retrievers.base import (
    Retriever,
    check_k,
    open_rgb,
    read_image_bytes,
    stopwatch,
)
from mmctr.retrieval.retrievers.image import FALLBACK, ImageRetriever

_SCREEN_MAX_SIDE = 1600  # screenshots larger than this are shrunk first (cost grows with area)
# Query photos are brought into this range of longer side: a 100-px thumbnail yields few keypoints,
# and a copy in a page is rarely larger than the query photo itself.
_QUERY_SIDES = (192, 480)
_SCALES = (1 / 8, 4.0)  # plausible scale of the photo's copy in the page
_MAX_ROTATION = 30.0  # degrees


def _gray(img, max_side: int, min_side: int = 0) -> np.ndarray:
    """An RGB PIL image as a uint8 grey array, resized so that its longer side lies within
    [min_side, max_side]."""
    from PIL import Image

    w, h = img.size
    target = min(max(max(w, h), min_side), max_side)
    if target != max(w, h):
        s = target / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), resample=Image.Resampling.BILINEAR)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def plausible(m: np.ndarray | None) -> bool:
    """Whether a 2x3 similarity could place a photo in a page."""
    if m is None or not np.all(np.isfinite(m)):
        return False
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    angle = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    return _SCALES[0] <= scale <= _SCALES[1] and abs(angle) <= _MAX_ROTATION


class _Features:
    """Keypoint positions (n, 2) float32 and descriptors (n, 32) uint8 (ORB, binary) or (n, 128)
    uint8 (SIFT) of one image."""

    __slots__ = ("pts", "des", "binary")

    def __init__(self, pts: np.ndarray, des: np.ndarray, binary: bool):
        self.pts = pts
        self.des = des
        self.binary = binary

    @property
    def nbytes(self) -> int:
        return int(self.pts.nbytes + self.des.nbytes)


LOCAL_FEATURES = ("sift", "orb")


def local_features(gray: np.ndarray, kind: str, n: int) -> _Features:
    import cv2

    if kind == "sift":
        det = cv2.SIFT_create(nfeatures=n)
    else:
        # A low FAST threshold and 15-px patches: photos in screenshots are small and flat-coloured,
        # and the defaults (20, 31 px) found almost no keypoints on them (measured on the generator).
        det = cv2.ORB_create(nfeatures=n, fastThreshold=5, edgeThreshold=15, patchSize=15)
    kps, des = det.detectAndCompute(gray, None)
    binary = kind != "sift"
    if des is None or not kps:
        return _Features(np.zeros((0, 2), np.float32), np.zeros((0, 32 if binary else 128), np.uint8), binary)
    des = des if binary else np.clip(np.rint(des), 0, 255).astype(np.uint8)
    return _Features(np.array([k.pt for k in kps], dtype=np.float32), des, binary)


def inliers(query: _Features, page: _Features, ratio: float, min_inliers: int) -> int:
    """Inliers of one plausible similarity among the ratio-tested matches of `query` in `page`;
    0 below `min_inliers`."""
    import cv2

    if len(query.des) < 2 or len(page.des) < 2:
        return 0
    if query.binary:
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.des, page.des, k=2)
    else:
        pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(
            query.des.astype(np.float32), page.des.astype(np.float32), k=2
        )
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < max(min_inliers, 3):
        return 0
    src = query.pts[[m.queryIdx for m in good]]
    dst = page.pts[[m.trainIdx for m in good]]
    cv2.setRNGSeed(0)  # RANSAC samples at random: the same seed gives the same count every run
    m, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0)
    count = int(mask.sum()) if mask is not None and plausible(m) else 0
    return count if count >= min_inliers else 0


class MatchRetriever(Retriever):
    name = "match"

    def __init__(self, options=None):
        super().__init__(options)
        self.image = ImageRetriever(self.options)
        # of the last call, for hybrid: the image ranking, and the rows verified (best first)
        self.image_rows: dict[str, np.ndarray] = {}
        self.verified: dict[str, np.ndarray] = {}

    def rank_docs(self, docs: DocSet, k: int) -> dict[str, list[str]]:
        out = self.image.rank_docs(docs, k)
        self.timings = self.image.timings
        self.timings["fallback"] = FALLBACK
        return out

    def _index_screens(self, ps: PassageSet) -> list[_Features | None]:
        n = self.options.screen_features
        feats: list[_Features | None] = []
        for i, path in enumerate(ps.passages.screenshot):
            if path is None:
                feats.append(None)
                continue
            who = f"passage {ps.passages.passage_id[i]} (row {i})"
            img = open_rgb(read_image_bytes(path, "page_screenshot", who), path, "page_screenshot", who)
            feats.append(local_features(_gray(img, _SCREEN_MAX_SIDE), self.options.local_features, n))
        return feats

    def passage_rows(self, ps: PassageSet, depth: int) -> dict[str, np.ndarray]:
        """question_id -> `depth` passage rows, best first. Fills `timings` (the image retriever's
        costs included)."""
        opts = self.options
        n_cand = opts.match_candidates
        self.image_rows = self.image.passage_rows(ps, max(depth, n_cand))
        t = self.timings = dict(self.image.timings)
        t["encode_ms"] = list(t["encode_ms"])
        t["search_ms"] = list(t["search_ms"])
        with stopwatch() as took:
            screens = self._index_screens(ps)
        t["index_seconds"] += took[0]
        t["index_bytes"] += sum(f.nbytes for f in screens if f is not None)
        t["match_candidates"] = n_cand
        self.verified = {}
        out: dict[str, np.ndarray] = {}
        for r, q in enumerate(ps.queries):
            ranked = self.image_rows[q.question_id]
            if q.image_path is None:
                out[q.question_id] = ranked[:depth]
                self.verified[q.question_id] = ranked[:0]
                continue
            who = f"query {q.question_id} (row {r})"
            data = read_image_bytes(q.image_path, "img_path", who)
            with stopwatch() as enc:
                img = open_rgb(data, q.image_path, "img_path", who)
                qf = local_features(
                    _gray(img, _QUERY_SIDES[1], _QUERY_SIDES[0]), opts.local_features, opts.query_features
                )
            with stopwatch() as search:
                head = ranked[:n_cand]
                counts = np.array(
                    [
                        0 if screens[i] is None else inliers(qf, screens[i], opts.ratio, opts.min_inliers)
                        for i in head
                    ]
                )
                # verified first (most inliers first), ties and the unverified in image order
                order = np.lexsort((np.arange(len(head)), -counts))
                out[q.question_id] = np.concatenate([head[order], ranked[n_cand:]])[:depth]
            self.verified[q.question_id] = head[order][: int((counts > 0).sum())]
            t["encode_ms"][r] += enc[0] * 1000
            t["search_ms"][r] += search[0] * 1000
        # queries with at least one candidate past min_inliers
        t["queries_verified"] = sum(1 for v in self.verified.values() if len(v))
        return out

    def rank_passages(self, ps: PassageSet, k: int) -> dict[str, list[str]]:
        check_k(k)
        ids = ps.passages.passage_id
        return {qid: [ids[i] for i in rows] for qid, rows in self.passage_rows(ps, k).items()}
