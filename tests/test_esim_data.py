"""ESIM's inputs: training sequences (never a held-out item), readable item text, typical users."""

import sys

import numpy as np
import pytest

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.encoders import TfidfEncoder
from recbole_eimf.esim.item_text import build_item_catalog
from recbole_eimf.esim.profiles import behavior_profiles, select_typical_users, text_profiles
from recbole_eimf.esim.sequences import training_sequences
from recbole_eimf.esim.settings import EsimSettings
from conftest import SMALL


def _targets_by_user(loader):
    ds = loader._dataset
    users = ds.inter_feat[ds.uid_field].numpy()
    items = ds.inter_feat[ds.iid_field].numpy()
    return dict(zip(users.tolist(), items.tolist()))


def test_training_sequences_are_each_users_history_without_validation_and_test_items(ml100k):
    config, dataset, train, valid, test = ml100k
    assert config["MAX_ITEM_LIST_LENGTH"] == 10   # prefixes are cut: the rebuild must not depend on them
    train_seqs = training_sequences(train._dataset)
    full_seqs = training_sequences(dataset)        # the same rebuild on the unsplit dataset
    valid_item, test_item = _targets_by_user(valid), _targets_by_user(test)
    assert len(valid_item) == len(test_item) == 943
    checked = 0
    for uid in range(1, dataset.user_num):
        seq, full = train_seqs.sequences[uid], full_seqs.sequences[uid]
        # Leave-one-out in time order: training = everything but the last two interactions.
        assert seq.tolist() == full[:-2].tolist()
        assert full[-2] == valid_item[uid] and full[-1] == test_item[uid]
        held_out = {valid_item[uid], test_item[uid]}
        if not held_out & set(full[:-2].tolist()):   # held-out items not also earlier in the history
            assert not held_out & set(seq.tolist())
            checked += 1
        assert len(seq) > 10   # longer than MAX_ITEM_LIST_LENGTH for every ml-100k user
    assert checked == 943
    assert train_seqs.sequences[0].size == 0       # RecBole's padding user
    assert train_seqs.fingerprint() != full_seqs.fingerprint()


def test_ml100k_item_text_is_readable(ml100k):
    _, dataset, train, _, _ = ml100k
    catalog = build_item_catalog(train._dataset, ["movie_title", "class"])
    titles = {catalog.values[i]["movie_title"]: i for i in range(1, catalog.n_items)}
    toy = titles["Toy Story"]
    assert catalog.values[toy]["class"] == "Animation, Children's, Comedy"
    assert catalog.text(toy) == "Toy Story | Animation, Children's, Comedy"
    assert catalog.labels[toy] == ["Animation", "Children's", "Comedy"]
    assert catalog.title(toy) == "Toy Story" and catalog.text(0) == ""


def test_text_fields_must_exist_in_the_dataset(ml100k):
    _, dataset, train, _, _ = ml100k
    with pytest.raises(ConfigError, match=r"`text_fields`.*\[title\].*movie_title, class"):
        build_item_catalog(train._dataset, ["title"])
    with pytest.raises(ConfigError, match="`text_fields` is empty"):
        build_item_catalog(train._dataset, [])


@pytest.fixture
def tiny_amazon(tmp_path):
    """A tiny dataset in the amazon-beauty layout (quoted category lists in a token_seq field)."""
    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset

    folder = tmp_path / "data" / "tiny"
    folder.mkdir(parents=True)
    categories = [
        "'Beauty', 'Hair Care', 'Styling Products', 'Creams, Gels & Lotions'",
        "'Beauty', 'Makeup', 'Face', 'Concealers & Neutralizers'",
        "'Beauty', \"Women's\", 'Eau de Parfum'",
    ]
    items = ["item_id:token\ttitle:token\tcategories:token_seq\tbrand:token"]
    for i in range(1, 13):
        items.append(f"i{i}\tProduct number {i}, 3.4 oz\t{categories[i % 3]}\t{'Brand' + str(i % 2) if i != 5 else ''}")
    inters = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(1, 7):
        for t, i in enumerate(range(u, u + 7), start=1):
            inters.append(f"u{u}\ti{(i % 12) + 1}\t{t}")
    (folder / "tiny.item").write_text("\n".join(items) + "\n")
    (folder / "tiny.inter").write_text("\n".join(inters) + "\n")
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        config = Config(model="ComiRecSA", dataset="tiny", config_dict={
            "data_path": str(tmp_path / "data"), "show_progress": False, "state": "WARNING",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "categories", "brand"]},
            "text_fields": ["title", "categories", "brand"], "MAX_ITEM_LIST_LENGTH": 3,
        })
        dataset = create_dataset(config)
        train, _, _ = dataset.build()
    finally:
        sys.argv = argv
    return config, dataset, train


def test_quoted_category_cells_become_names_again(tiny_amazon):
    config, dataset, train = tiny_amazon
    catalog = build_item_catalog(train, EsimSettings.from_config(config).text_fields)
    by_title = {catalog.values[i]["title"]: i for i in range(1, catalog.n_items)}
    hair = by_title["Product number 3, 3.4 oz"]
    assert catalog.values[hair]["categories"] == "Beauty, Hair Care, Styling Products, Creams, Gels & Lotions"
    assert catalog.labels[hair] == ["Beauty", "Hair Care", "Styling Products", "Creams, Gels & Lotions"]
    perfume = by_title["Product number 2, 3.4 oz"]
    assert catalog.labels[perfume] == ["Beauty", "Women's", "Eau de Parfum"]
    assert catalog.values[by_title["Product number 5, 3.4 oz"]]["brand"] == ""   # missing brand left out
    assert catalog.text(by_title["Product number 5, 3.4 oz"]).count("|") == 1
    # 7 interactions per user: 5 for training, and the training rows only carry prefixes of 3 items.
    seqs = training_sequences(train)
    assert {len(s) for s in seqs.sequences[1:]} == {5}


def test_typical_users_are_deterministic_rich_and_nearest_their_centroid(ml100k):
    _, dataset, train, _, _ = ml100k
    seqs = training_sequences(train._dataset)
    catalog = build_item_catalog(train._dataset, ["movie_title", "class"])
    embeddings = TfidfEncoder(dim=64, seed=1).fit(catalog.texts()[1:]).encode(catalog.texts())
    profiles = text_profiles(seqs, embeddings)
    assert len(profiles.uids) == 943 and np.allclose(np.linalg.norm(profiles.vectors, axis=1), 1, atol=1e-5)
    lengths = seqs.lengths()
    min_history = int(np.percentile(lengths[1:], 60))   # a real restriction on ml-100k
    args = dict(n_users=seqs.n_users, n_clusters=6, users_per_cluster=5, min_history=min_history, seed=7)
    first = select_typical_users(profiles, lengths, **args)
    second = select_typical_users(profiles, lengths, **args)
    assert all(np.array_equal(a, b) for a, b in zip(first.typical, second.typical))
    assert np.array_equal(first.user_cluster, second.user_cluster)
    typical = first.typical_users
    assert len(typical) == 30 and len(set(typical.tolist())) == 30
    assert (lengths[typical] >= min_history).all()
    assert first.user_cluster[0] == -1 and (first.user_cluster[1:] >= 0).all()
    # Nearest the centroid: no eligible user of the cluster is closer than its farthest typical user.
    for cluster, chosen in enumerate(first.typical):
        members = profiles.uids[(first.user_cluster[profiles.uids] == cluster) & (lengths[profiles.uids] >= min_history)]
        rows = {u: k for k, u in enumerate(profiles.uids)}
        centroid = profiles.vectors[[rows[u] for u in profiles.uids if first.user_cluster[u] == cluster]].mean(0)
        dist = {u: np.linalg.norm(profiles.vectors[rows[u]] - centroid) for u in members}
        worst_chosen = max(dist[u] for u in chosen)
        others = [dist[u] for u in members if u not in set(chosen.tolist())]
        assert not others or min(others) >= worst_chosen - 1e-4

    behavior = behavior_profiles(seqs, dim=16, seed=7)
    assert behavior.vectors.shape == (943, 16)
    chosen = select_typical_users(behavior, lengths, **args)
    assert len(chosen.typical_users) == 30


def test_auto_clusters_grow_with_the_users(ml100k):
    """`n_clusters: auto` (the default): round(sqrt(users / 2)) clusters, so the typical users of
    ml-100k (943 users) and of a dataset 100 times larger are both a sample of similar users."""
    from recbole_eimf.esim.profiles import auto_clusters
    from recbole_eimf.esim.settings import EsimSettings

    assert [auto_clusters(n) for n in (1, 943, 22_363, 459_133)] == [1, 22, 106, 479]
    from recbole_eimf.config import Config

    _, dataset, train, _, _ = ml100k
    settings = EsimSettings.from_config(Config(model="EIMF", dataset="ml-100k", config_dict=dict(SMALL)))
    assert settings.n_clusters is None and settings.users_per_cluster == 20  # properties/esim.yaml
    seqs = training_sequences(train._dataset)
    profiles = behavior_profiles(seqs, dim=16, seed=7)
    chosen = select_typical_users(profiles, seqs.lengths(), seqs.n_users, None, 3, 5, 7)
    assert chosen.n_clusters == 22 and len(chosen.typical) == 22 and len(chosen.typical_users) == 66


def test_many_users_are_clustered_on_mini_batches_deterministically(ml100k, monkeypatch):
    """Above FULL_KMEANS_MAX_WORK (users x clusters) k-means runs on mini-batches: same seed, same
    typical users, each still among the nearest of its cluster's eligible users."""
    import recbole_eimf.esim.profiles as profiles_module

    _, dataset, train, _, _ = ml100k
    seqs = training_sequences(train._dataset)
    profiles = behavior_profiles(seqs, dim=16, seed=7)
    args = (profiles, seqs.lengths(), seqs.n_users, 8, 3, 5, 7)
    full = select_typical_users(*args)
    monkeypatch.setattr(profiles_module, "FULL_KMEANS_MAX_WORK", 100)
    assert type(profiles_module._kmeans(943, 8, 7)).__name__ == "MiniBatchKMeans"
    first, second = select_typical_users(*args), select_typical_users(*args)
    assert np.array_equal(first.user_cluster, second.user_cluster)
    assert all(np.array_equal(a, b) for a, b in zip(first.typical, second.typical))
    assert len(first.typical_users) == len(full.typical_users) == 24
    assert len(set(first.user_cluster[1:].tolist())) == 8
