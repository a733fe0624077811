"""A synthetic twin of an Amazon dataset, in RecBole's atomic files, at any scale.

    python -m recbole_eimf.data.synthetic --like=amazon-books --scale=0.01 --seed=0 --out=DIR
    python run_recbole_eimf.py --dataset=amazon-books --data_path=DIR --epochs=1

writes ``DIR/<dataset>/<dataset>.inter`` and ``.item`` with the columns of RecBole's Amazon files,
so the dataset's own yaml (``recbole_eimf/properties/dataset/<dataset>.yaml``) applies unchanged. What survives that
yaml's filters (ratings >= 4, one row per (user, item), the k-core) is shaped like the real set
after them: the counts of a profile below times ``--scale``, long-tailed user lengths and item
popularity (a discretised Lomax, calibrated on the real amazon-beauty file), time-ordered
interactions, and topics: every user reads 1-4 topics, and every topic has a category path and a
title vocabulary, so users' histories hold a few coherent interests in their item text. Rows the
filters drop are added on purpose (low ratings, users below the core), so the filters have work.

The core is built as a configuration model per topic: user lengths and item counts are drawn
first, then a topic's item slots are dealt to its readers at random and repeated (user, item) pairs
are swapped away, so every kept user and item has at least ``min_count`` interactions.
Deterministic per seed; vectorised numpy, and the ``.inter`` file is written in chunks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

WRITE_CHUNK = 1_000_000
ID_WIDTH = 9                 # A000000001 (user), B000000001 (item): the width of an Amazon id
MAX_TOPICS_PER_USER = 4
TOPICS_PER_USER_P = (0.1, 0.2, 0.3, 0.4)     # 1, 2, 3, 4 topics (amazon-beauty: 3.7 per user)
MAX_TOPIC_SHARE = 0.3


@dataclass(frozen=True)
class Profile:
    """The published size of a dataset after its filters, and how its rows look."""

    dataset: str
    n_users: int
    n_items: int
    n_inter: int
    min_count: int            # the k of the k-core: every user and item has at least this many
    user_shape: float         # Lomax tail index of user length above min_count (lower: longer tail)
    item_shape: float         # Lomax tail index of item popularity above min_count
    max_user_len: int
    root: str                 # first category of every item
    genres: dict              # genre -> title keywords
    unix_time: bool           # Unix seconds (Books) or 1..L per user (the beauty file's positions)
    with_rating: bool         # a rating column, with rows below 4 the yaml's filter removes
    low_rating_share: float   # added rows rated 1-3, as a share of the core
    sparse_user_share: float  # added users below the core, as a share of the core's users
    brands_per_topic: int


BOOK_GENRES = {
    "Mystery, Thriller & Suspense": ["murder", "detective", "secret", "case", "killer", "night"],
    "Romance": ["love", "heart", "bride", "kiss", "duke", "summer"],
    "Science Fiction & Fantasy": ["dragon", "star", "empire", "magic", "galaxy", "sword"],
    "History": ["war", "empire", "revolution", "century", "battle", "kings"],
    "Biographies & Memoirs": ["life", "memoir", "story", "journey", "years", "my"],
    "Cookbooks, Food & Wine": ["recipes", "kitchen", "cooking", "baking", "wine", "bread"],
    "Business & Money": ["leadership", "money", "strategy", "market", "success", "invest"],
    "Health, Fitness & Dieting": ["diet", "health", "fitness", "weight", "healing", "body"],
    "Religion & Spirituality": ["faith", "prayer", "god", "spirit", "soul", "grace"],
    "Children's Books": ["bear", "little", "friends", "adventure", "bunny", "bedtime"],
    "Teen & Young Adult": ["academy", "school", "rebel", "vampire", "chosen", "wings"],
    "Literature & Fiction": ["novel", "daughter", "house", "river", "stories", "letters"],
    "Science & Math": ["universe", "physics", "evolution", "brain", "theory", "nature"],
    "Politics & Social Sciences": ["democracy", "power", "society", "justice", "nation", "policy"],
    "Self-Help": ["habits", "happiness", "mind", "change", "confidence", "purpose"],
    "Comics & Graphic Novels": ["hero", "volume", "saga", "batman", "legends", "issue"],
    "Computers & Technology": ["programming", "python", "data", "network", "software", "code"],
    "Arts & Photography": ["painting", "photography", "design", "drawing", "art", "color"],
    "Crafts, Hobbies & Home": ["knitting", "quilting", "garden", "woodworking", "craft", "patterns"],
    "Travel": ["guide", "italy", "journey", "walking", "islands", "road"],
    "Parenting & Relationships": ["parenting", "baby", "marriage", "family", "kids", "toddler"],
    "Sports & Outdoors": ["baseball", "fishing", "golf", "running", "season", "climbing"],
    "Christian Books & Bibles": ["bible", "jesus", "devotional", "church", "gospel", "study"],
    "Westerns": ["ranch", "outlaw", "texas", "cowboy", "frontier", "trail"],
}

BEAUTY_GENRES = {
    "Makeup": ["eyeshadow", "lipstick", "mascara", "palette", "foundation", "concealer"],
    "Skin Care": ["cream", "serum", "moisturizer", "cleanser", "anti-aging", "spf"],
    "Hair Care": ["shampoo", "conditioner", "styling", "gel", "repair", "volume"],
    "Fragrance": ["parfum", "eau", "spray", "toilette", "scent", "cologne"],
    "Tools & Accessories": ["brush", "mirror", "tweezers", "sponge", "curler", "set"],
    "Bath & Body": ["soap", "lotion", "scrub", "bath", "shower", "butter"],
    "Nail Polish & Decoration": ["nail", "polish", "lacquer", "gel", "coat", "art"],
    "Men's Grooming": ["shave", "razor", "beard", "aftershave", "trimmer", "men's"],
}

PROFILES = {
    # Cen et al., "Controllable Multi-Interest Framework for Recommendation", KDD 2020, the
    # dataset statistics table (Amazon Books after ComiRec's preprocessing).
    "amazon-books": Profile(
        dataset="amazon-books", n_users=459_133, n_items=313_966, n_inter=8_898_041, min_count=10,
        user_shape=2.2, item_shape=2.4, max_user_len=5_000, root="Books", genres=BOOK_GENRES,
        unix_time=True, with_rating=True, low_rating_share=0.2, sparse_user_share=0.5,
        brands_per_topic=20,
    ),
    # The project's amazon-beauty file (dataset/amazon-beauty): 5-core, timestamps are
    # positions 1..L, no rating column.
    "amazon-beauty": Profile(
        dataset="amazon-beauty", n_users=22_363, n_items=12_101, n_inter=198_502, min_count=5,
        user_shape=2.2, item_shape=2.4, max_user_len=204, root="Beauty", genres=BEAUTY_GENRES,
        unix_time=False, with_rating=False, low_rating_share=0.0, sparse_user_share=0.0,
        brands_per_topic=12,
    ),
}

INTER_HEADER = {True: ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
                False: ["user_id:token", "item_id:token", "timestamp:float"]}
ITEM_HEADER = ["item_id:token", "title:token", "sales_type:token", "sales_rank:float",
               "categories:token_seq", "price:float", "brand:token"]
SYLLABLES = ["ka", "lo", "ren", "mi", "tha", "vel", "dor", "sa", "qui", "ber", "no", "zan",
             "el", "ta", "mor", "ith", "gal", "pre", "su", "ven", "cor", "li", "ash", "um"]
FILLERS = ["the", "of", "and", "a", "guide", "book", "edition", "volume", "complete", "new"]


def lomax_counts(rng: np.random.Generator, n: int, total: int, minimum: int, shape: float,
                 maximum: int | None = None) -> np.ndarray:
    """``n`` integers >= ``minimum`` summing to ``total``, the excess Lomax-shaped (long tail)."""
    budget = total - minimum * n
    if budget < 0:
        raise ValueError(f"{total} interactions cannot give {n} rows {minimum} each")
    scaled = rng.pareto(shape, n)
    for _ in range(10):   # rescale to the budget, capping the tail at the maximum
        scaled *= budget / scaled.sum()
        if maximum is None or scaled.max() <= maximum - minimum:
            break
        np.minimum(scaled, maximum - minimum, out=scaled)
    counts = np.floor(scaled).astype(np.int64)
    remainder = budget - int(counts.sum())
    # The largest fractional parts get the missing ones: exact total, shape unchanged.
    counts[np.argsort(counts - scaled, kind="stable")[:remainder]] += 1
    return counts + minimum


def n_topics_for(n_items: int) -> int:
    """Topic count growing like sqrt(items): ~200 on Books, tens at 1%, a few on a test set."""
    return int(np.clip(round(0.35 * np.sqrt(n_items)), 4, 200))


def user_topics(rng: np.random.Generator, n_users: int, n_topics: int, at_least: np.ndarray,
                chunk: int = 65_536) -> np.ndarray:
    """[n_users, 4] distinct topics per user (Zipf-popular topics first), -1 past each user's count."""
    k = rng.choice(np.arange(1, MAX_TOPICS_PER_USER + 1), size=n_users, p=TOPICS_PER_USER_P)
    k = np.maximum(k, at_least)
    log_p = -0.8 * np.log(np.arange(1, n_topics + 1))
    out = np.empty((n_users, MAX_TOPICS_PER_USER), dtype=np.int64)
    for start in range(0, n_users, chunk):   # Gumbel top-k, chunked: n_users x n_topics floats
        gumbel = log_p - np.log(-np.log(rng.random((min(chunk, n_users - start), n_topics))))
        out[start:start + chunk] = np.argsort(-gumbel, axis=1)[:, :MAX_TOPICS_PER_USER]
    out[np.arange(MAX_TOPICS_PER_USER)[None, :] >= k[:, None]] = -1
    return out


def interaction_topics(rng: np.random.Generator, lengths: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """The topic of every interaction: each user splits their length over their topics (Dirichlet)."""
    weights = (1.0 - np.log(rng.random(topics.shape))) * (topics >= 0)   # no topic takes nearly all
    weights /= weights.sum(axis=1, keepdims=True)
    per_topic = rng.multinomial(lengths, weights)
    return np.repeat(topics.ravel(), per_topic.ravel())


def items_per_topic(demand: np.ndarray, n_items: int, minimum: int) -> np.ndarray:
    """Items per topic in proportion to its interactions, each topic able to give every item ``minimum``."""
    share = demand / demand.sum() * n_items
    counts = np.floor(share).astype(np.int64)
    counts[np.argsort(counts - share, kind="stable")[: n_items - int(counts.sum())]] += 1
    counts = np.minimum(counts, demand // minimum)
    while counts.sum() < n_items:   # topics capped by their demand pass items to those with room
        room = demand // minimum - counts
        if room.sum() == 0:
            raise ValueError(f"{demand.sum()} interactions cannot give {n_items} items {minimum} each")
        counts[np.argmax(room)] += min(int(room.max()), n_items - int(counts.sum()))
    return counts


def deal_items(rng: np.random.Generator, user: np.ndarray, topic: np.ndarray, n_topics: int,
               n_items: int, minimum: int, shape: float) -> tuple[np.ndarray, np.ndarray]:
    """Items for every interaction (topic by topic, long-tailed counts >= minimum), and each item's topic."""
    demand = np.bincount(topic, minlength=n_topics)
    n_per_topic = items_per_topic(demand, n_items, minimum)
    item_topic = np.repeat(np.arange(n_topics), n_per_topic)
    counts = np.concatenate([
        lomax_counts(rng, n, int(d), minimum, shape) if n else np.zeros(0, np.int64)
        for n, d in zip(n_per_topic, demand)
    ])
    slots = np.repeat(np.arange(n_items), counts)          # grouped by topic, like `order` below
    order = np.lexsort((rng.random(len(topic)), topic))     # interactions by topic, shuffled within
    item = np.empty(len(topic), dtype=np.int64)
    item[order] = slots
    item = _swap_repeats(rng, user, item, order, np.cumsum(demand) - demand, demand, topic, n_items)
    return item, item_topic


def _swap_repeats(rng, user, item, order, block_start, block_size, topic, n_items, rounds: int = 30):
    """Swap a repeated (user, item)'s item with a random slot of the same topic; degrees are kept.

    A swap is made only if it creates no new repeat on either side.
    """
    for _ in range(rounds):
        key = user * n_items + item
        sort = np.argsort(key, kind="stable")
        sorted_key = key[sort]
        repeated = sort[1:][sorted_key[1:] == sorted_key[:-1]]
        if len(repeated) == 0:
            break
        t = topic[repeated]
        partner = order[block_start[t] + (rng.random(len(repeated)) * block_size[t]).astype(np.int64)]
        fresh = ~_contains(sorted_key, user[repeated] * n_items + item[partner])
        fresh &= ~_contains(sorted_key, user[partner] * n_items + item[repeated])
        a, b = repeated[fresh], partner[fresh]
        b, first = np.unique(b, return_index=True)   # each slot swapped once per round
        a = a[first]
        keep = ~np.isin(b, a)
        a, b = a[keep], b[keep]
        item[a], item[b] = item[b].copy(), item[a].copy()
    return item


def _contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    where = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[where] == values


def timestamps(rng: np.random.Generator, lengths: np.ndarray, unix_time: bool) -> np.ndarray:
    """Increasing times per user: Unix seconds between 1996 and mid-2014, or positions 1..L."""
    if not unix_time:
        offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
        return (np.arange(lengths.sum()) - offsets + 1).astype(np.float64)
    start, end = 820_454_400, 1_406_073_600
    first, last = np.cumsum(lengths) - lengths, np.cumsum(lengths) - 1
    gaps = rng.exponential(1.0, lengths.sum())
    running = np.cumsum(gaps)
    within = running - np.repeat(running[first] - gaps[first], lengths)   # each user's own clock
    span = np.repeat(within[last], lengths)
    user_span = np.repeat(rng.uniform(0.05, 1.0, len(lengths)) ** 2 * (end - start), lengths)
    user_start = np.repeat(rng.random(len(lengths)), lengths) * (end - start - user_span) + start
    return np.floor(user_start + within / span * user_span)


@dataclass
class Interactions:
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    time: np.ndarray

    def __add__(self, other: "Interactions") -> "Interactions":
        return Interactions(*(np.concatenate([getattr(self, f), getattr(other, f)])
                              for f in ("user", "item", "rating", "time")))


def core_interactions(rng: np.random.Generator, profile: Profile, n_users: int, n_items: int,
                      n_inter: int, n_topics: int) -> tuple[Interactions, np.ndarray]:
    """The rows that survive the filters: a k-core with topic-coherent users, time-ordered."""
    k = profile.min_count
    # A user reads at most ~30% of a topic's items, or the topic's popular items would repeat.
    per_topic = max(k, int(MAX_TOPIC_SHARE * n_items / n_topics))
    max_len = min(profile.max_user_len, MAX_TOPICS_PER_USER * per_topic)
    lengths = lomax_counts(rng, n_users, n_inter, k, profile.user_shape, max_len)
    topics = user_topics(rng, n_users, n_topics, at_least=-(-lengths // per_topic))
    user = np.repeat(np.arange(n_users), lengths)
    topic = interaction_topics(rng, lengths, topics)
    item, item_topic = deal_items(rng, user, topic, n_topics, n_items, k, profile.item_shape)
    del topic
    shuffled = np.lexsort((rng.random(len(user)), user))    # each user's topics interleaved in time
    item = item[shuffled]
    rating = rng.choice([4.0, 5.0], size=len(user), p=[0.3, 0.7])
    return Interactions(user, item, rating, timestamps(rng, lengths, profile.unix_time)), item_topic


def filtered_away(rng: np.random.Generator, profile: Profile, core: Interactions, n_users: int,
                  n_items: int) -> Interactions:
    """Rows the yaml's filters drop: ratings 1-3 by core users, and users with fewer than k rows."""
    n_low = int(profile.low_rating_share * len(core.user))
    pick = rng.integers(0, len(core.user), n_low)
    low = Interactions(core.user[pick], core.item[rng.integers(0, len(core.user), n_low)],
                       rng.choice([1.0, 2.0, 3.0], n_low, p=[0.25, 0.3, 0.45]), core.time[pick] + 1)
    # A low rating on a pair the core holds would make the core's row a duplicate: none of those.
    fresh = ~np.isin(low.user * n_items + low.item, core.user * n_items + core.item)
    low = Interactions(low.user[fresh], low.item[fresh], low.rating[fresh], low.time[fresh])
    n_sparse = int(profile.sparse_user_share * n_users)
    lengths = rng.integers(1, profile.min_count, n_sparse)
    sparse_user = n_users + np.repeat(np.arange(n_sparse), lengths)
    sparse_item = core.item[rng.integers(0, len(core.user), lengths.sum())]
    sparse = Interactions(sparse_user, sparse_item, rng.choice([4.0, 5.0], lengths.sum()),
                          timestamps(rng, lengths, profile.unix_time))
    return low + sparse


def item_table(rng: np.random.Generator, profile: Profile, item_topic: np.ndarray, n_topics: int) -> pd.DataFrame:
    """Titles from each topic's vocabulary, the topic's category path, a brand of the topic."""
    genre_names = list(profile.genres)
    topic_genre = np.arange(n_topics) % len(genre_names)
    vocab = [[_pseudo_word(rng) for _ in range(24)] for _ in range(n_topics)]
    sub = [_pseudo_word(rng).capitalize() for _ in range(n_topics)]
    brands = [[_pseudo_word(rng).capitalize() for _ in range(profile.brands_per_topic)] for _ in range(n_topics)]
    n = len(item_topic)
    n_words = rng.integers(2, 7, n)
    zipf = 1.0 / np.arange(1, 25)
    word_pick = rng.choice(24, size=(n, 6), p=zipf / zipf.sum())
    keyword_pick = rng.integers(0, 6, (n, 2))
    filler_pick = rng.integers(0, len(FILLERS), n)
    brand_pick = rng.integers(0, profile.brands_per_topic, n)
    titles, categories, brand = [], [], []
    for i, t in enumerate(item_topic.tolist()):
        genre = genre_names[topic_genre[t]]
        words = [vocab[t][w] for w in word_pick[i, : n_words[i]]]
        words.insert(1, profile.genres[genre][keyword_pick[i, 0]])
        if n_words[i] > 3:
            words.insert(2, FILLERS[filler_pick[i]])
        titles.append(" ".join(words).title())
        categories.append(f"'{profile.root}', '{genre}', '{sub[t]}'")
        brand.append(brands[t][brand_pick[i]])
    return pd.DataFrame({
        ITEM_HEADER[0]: item_ids(np.arange(n)), ITEM_HEADER[1]: titles, ITEM_HEADER[2]: profile.root,
        ITEM_HEADER[3]: np.floor(rng.pareto(1.0, n) * 1e4 + 1), ITEM_HEADER[4]: categories,
        ITEM_HEADER[5]: np.round(rng.lognormal(2.5, 0.7, n), 2), ITEM_HEADER[6]: brand,
    })


def _pseudo_word(rng: np.random.Generator) -> str:
    return "".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), rng.integers(2, 4)))


def item_ids(index: np.ndarray) -> np.ndarray:
    return np.char.add("B", np.char.zfill(index.astype(str), ID_WIDTH))


def write_inter(path: Path, rows: Interactions, with_rating: bool) -> None:
    """Rows in time order within each user, users in id order; written a chunk at a time."""
    order = np.lexsort((rows.time, rows.user))
    time_width = len(str(int(rows.time.max())))
    header = INTER_HEADER[with_rating]
    with open(path, "wb") as f:
        f.write(("\t".join(header) + "\n").encode())
        for start in range(0, len(order), WRITE_CHUNK):
            idx = order[start:start + WRITE_CHUNK]
            fields = [(b"A", rows.user[idx], ID_WIDTH), (b"B", rows.item[idx], ID_WIDTH)]
            fields += [(b"", rows.rating[idx].astype(np.int64), 1)] if with_rating else []
            fields += [(b"", rows.time[idx].astype(np.int64), time_width)]
            f.write(fixed_width_lines(fields))


def fixed_width_lines(fields: list) -> bytes:
    """Tab-separated lines of zero-padded integers (with a letter prefix), built as one byte matrix
    (pandas' to_csv, row by row, was most of the generator's time at scale 1.0)."""
    parts = []
    for prefix, values, width in fields:
        powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
        digits = (values[:, None] // powers % 10 + 48).astype(np.uint8)
        if prefix:
            parts.append(np.full((len(values), len(prefix)), prefix[0], dtype=np.uint8))
        parts.append(digits)
        parts.append(np.full((len(values), 1), ord("\t"), dtype=np.uint8))
    parts[-1] = np.full((len(parts[-1]), 1), ord("\n"), dtype=np.uint8)
    return np.hstack(parts).tobytes()


def generate(like: str, scale: float, seed: int, out: Path) -> Path:
    """Write ``out/<dataset>/<dataset>.inter`` and ``.item`` for ``like`` at ``scale``; returns the folder."""
    if like not in PROFILES:
        raise ValueError(f"--like={like}: choose one of {', '.join(PROFILES)}")
    if not scale > 0:
        raise ValueError(f"--scale={scale}: must be > 0")
    profile = PROFILES[like]
    n_users, n_items, n_inter = (max(1, round(n * scale)) for n in
                                 (profile.n_users, profile.n_items, profile.n_inter))
    n_users = max(n_users, 2)
    n_inter = max(n_inter, profile.min_count * max(n_users, n_items))
    n_topics = n_topics_for(n_items)
    rng = np.random.default_rng(seed)
    core, item_topic = core_interactions(rng, profile, n_users, n_items, n_inter, n_topics)
    folder = Path(out) / profile.dataset
    folder.mkdir(parents=True, exist_ok=True)
    item_table(rng, profile, item_topic, n_topics).to_csv(
        folder / f"{profile.dataset}.item", sep="\t", index=False)
    extra = filtered_away(rng, profile, core, n_users, n_items)
    rows = core + extra
    del core, extra
    write_inter(folder / f"{profile.dataset}.inter", rows, profile.with_rating)
    logger.info(f"{folder}: {n_users} users, {n_items} items, {n_inter} interactions after the filters "
                f"({len(rows.user)} rows written), {n_topics} topics")
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--like", default="amazon-books", choices=sorted(PROFILES))
    parser.add_argument("--scale", type=float, default=0.01, help="1.0: the published size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="dataset", help="the --data_path to train with")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate(args.like, args.scale, args.seed, Path(args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
