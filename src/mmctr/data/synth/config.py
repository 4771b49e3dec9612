"""Sizes and hidden parameters of the synthetic world, each stated once so they can be tuned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """How big a generated data set is. `n_items` excludes the padding row 0."""

    n_items: int
    n_users: int
    n_train: int
    n_valid: int
    n_test: int
    n_tags: int  # tag vocabulary size including the padding id 0, so tag ids are 1..n_tags-1
    image_size: int  # side of the square JPEG covers, in pixels


SCALES: dict[str, Scale] = {
    # Tests use tiny: it must generate in a second or two.
    "tiny": Scale(
        n_items=400, n_users=600, n_train=4_000, n_valid=1_000, n_test=1_000, n_tags=200, image_size=32
    ),
    # The demo: a DIN trains on it in a few minutes on a CPU. 1.2M train rows because the DIN's gap
    # to the oracle is set by how many (history, target) pairs it sees: at 300k rows it stopped
    # 0.04-0.07 short of the oracle whatever the epochs, at 1.2M it is within 0.02 after 2 epochs.
    "small": Scale(
        n_items=6_000,
        n_users=40_000,
        n_train=1_200_000,
        n_valid=10_000,
        n_test=20_000,
        n_tags=1_500,
        image_size=64,
    ),
    # The real challenge's counts (item_info has 91,718 rows, tag ids up to 11,739).
    "full": Scale(
        n_items=91_717,
        n_users=1_000_000,
        n_train=3_600_000,
        n_valid=10_000,
        n_test=379_142,
        n_tags=11_740,
        image_size=48,
    ),
}


@dataclass(frozen=True)
class WorldParams:
    """The generator's hidden truth: latent sizes, content noise, behaviour and the click model."""

    # Latent space. Topic shows in titles and tags; style shows only in the cover image.
    n_styles: int = 12
    latent_dim: int = 16
    item_noise: float = 0.2  # weight of each item's own latent direction, seen by no content

    # Items.
    cold_share: float = 0.08  # items that never appear in train nor in any history
    pop_sigma: float = 1.6  # log-popularity spread: a long tail of rarely clicked items
    quality_sd: float = 0.3  # hidden per-item click effect: only an id embedding can learn it
    views_noise: float = 0.35  # noise on log popularity before binning into views_level
    likes_noise: float = 0.7  # likes are noisier than views, so the two levels differ
    tag_topic_share: float = 0.8  # share of an item's tags drawn from its topic's block
    # The provided item_emb_d128 is middling on purpose, so better Task-1 encoders can beat it:
    # per-item noise (per dimension, relative to the signal) and a weaker view of the image style.
    emb_noise: float = 1.0
    emb_style_weight: float = 0.6

    # Users.
    max_fav_topics: int = 3  # each user likes 1..max_fav_topics topics ...
    max_fav_styles: int = 2  # ... and 1..max_fav_styles styles
    pref_floor: float = 0.08  # share of a user's attention spread over every topic and style
    hist_mu: float = 1.25  # history length = 3 + floor(lognormal(hist_mu, hist_sigma)), at most 100
    hist_sigma: float = 0.95

    # Split rows.
    pref_target_share: float = 0.5  # targets drawn from the user's taste; the rest by popularity
    cold_target_share: float = 0.10  # valid/test targets replaced by cold items

    # Click model: logit = b0 + a_match <p_u, v_t> + a_hist H + a_pop z(log pop_t) + q_t, and
    # P(click) = E[sigmoid(logit + e)], e ~ N(0, logit_noise^2) per row.
    a_match: float = 2.0
    a_hist: float = 3.0
    a_pop: float = 0.5
    beta: float = 4.0  # sharpness of the soft max over history similarities in H
    hist_window: int = 20  # H looks at the most recent hist_window history items
    logit_noise: float = 0.3  # per-row noise, integrated out of the true probability (see world.py)
    positive_rate: float = 0.25  # b0 is found by bisection to give this mean click probability
