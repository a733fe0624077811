"""Per-user significance and the training-health check of the benchmark report, on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from recbole_eimf.benchmark.health import MIN_LOSS_DROP, health_markdown, training_health
from recbole_eimf.benchmark.per_user import save_per_user, user_metrics
from recbole_eimf.benchmark.report import reference_comparisons, write_reports
from recbole_eimf.benchmark.significance import paired_p_value, record_loader, seed_mean_metrics


def test_paired_p_value_on_a_hand_computed_case():
    # Five positive differences, no ties: of the 2^5 sign patterns, only all-positive and
    # all-negative are as extreme, so the exact two-sided p is 2 / 32.
    assert paired_p_value(np.array([1.0, 2, 3, 4, 5]), np.zeros(5)) == pytest.approx(2 / 32)
    # Users whose values are equal carry no sign and are left out ("wilcox" zero method).
    assert paired_p_value(np.array([1.0, 2, 3, 4, 5, 7, 7]), np.array([0.0, 0, 0, 0, 0, 7, 7])) == pytest.approx(2 / 32)
    assert paired_p_value(np.ones(10), np.ones(10)) == 1.0  # nothing differs
    with pytest.raises(ValueError, match="one length"):
        paired_p_value(np.ones(3), np.ones(4))


def test_paired_p_value_separates_a_small_consistent_change_from_noise():
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(0)
    base = rng.uniform(0.0, 1.0, 1000)  # users differ far more than the models do
    better = base + 0.01 + rng.normal(0.0, 0.02, 1000)
    # Unpaired, the small shift drowns in the spread between users; paired, it is clear.
    assert ttest_ind(better, base).pvalue > 0.05
    assert paired_p_value(better, base) < 1e-10
    # Differences in +/- pairs: the signed ranks balance (up to float rounding), so p is 1.
    change = rng.normal(0.0, 0.02, 500)
    assert paired_p_value(base + np.concatenate([change, -change]), base) > 0.99
    # Pairing is by position: shuffling one side destroys the signal.
    assert paired_p_value(rng.permutation(better), base) > 1e-3


def test_user_metrics_from_ranks():
    metrics = user_metrics(np.array([0, 1, 19, 20, 50]), 20)
    assert metrics["recall@20"].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert metrics["ndcg@20"] == pytest.approx([1.0, 1 / np.log2(3), 1 / np.log2(21), 0.0, 0.0])
    with pytest.raises(ValueError, match="kept up to 50"):
        user_metrics(np.array([1]), 100)


def _run(tmp_path, model, seed, ndcg, ranks=None, fingerprint="users-a"):
    record = {
        "model": model, "seed": seed, "params": 10, "epochs_run": 1, "best_epoch": 0, "train_sec_per_epoch": 1.0,
        "test_inference_sec": 1.0, "test": {"recall@20": 2 * ndcg, "ndcg@20": ndcg, "recall@50": 0.5, "ndcg@50": 0.2},
    }
    if ranks is not None:
        users = np.arange(len(ranks)) * 3 + 7  # sorted, not contiguous
        record["per_user"] = save_per_user(
            tmp_path, model, seed, {"users": users, "ranks": np.asarray(ranks), "user_fingerprint": fingerprint}
        )
    return record


def test_report_p_values_average_each_user_over_the_seeds_both_ran(tmp_path):
    rng = np.random.default_rng(1)
    base = [rng.integers(0, 60, 800) for _ in range(2)]
    # A better model: each user's target ranked 3 places higher (rank 0 stays 0).
    better = [np.maximum(r - 3, 0) for r in base]
    runs = [_run(tmp_path, "SASRec", s, 0.1, base[i]) for i, s in enumerate((1, 2))]
    runs += [_run(tmp_path, "New", s, 0.12, better[i]) for i, s in enumerate((1, 2))]
    runs += [_run(tmp_path, "Noise", s, 0.1, rng.permutation(base[i])) for i, s in enumerate((1, 2))]
    runs += [_run(tmp_path, "Old", 1, 0.1)]  # recorded before per-user ranks were kept
    runs += [_run(tmp_path, "Elsewhere", 1, 0.1, base[0], fingerprint="users-b")]  # other users
    models = ["SASRec", "New", "Noise", "Old", "Elsewhere"]
    by_model = {e["model"]: e for e in reference_comparisons(runs, models, "SASRec", record_loader(tmp_path))}

    for key in ("recall@20", "ndcg@20"):
        k = 20
        mean_new = (user_metrics(better[0], k)[key] + user_metrics(better[1], k)[key]) / 2
        mean_base = (user_metrics(base[0], k)[key] + user_metrics(base[1], k)[key]) / 2
        assert by_model["New"]["p"][key] == pytest.approx(paired_p_value(mean_new, mean_base))
        assert by_model["New"]["p"][key] < 1e-6
        assert by_model["Noise"]["p"][key] > 0.01
        assert by_model["Old"]["p"][key] is None and by_model["Elsewhere"]["p"][key] is None

    _, markdown = write_reports(runs, tmp_path, "toy", models, reference="SASRec")
    assert "| New | SASRec | 2 | +20.0% [+20.0%, +20.0%] | <0.001 | +20.0% [+20.0%, +20.0%] | <0.001 |" in markdown
    assert "| Old | SASRec | 1 | +0.0% | - | +0.0% | - |" in markdown
    assert "Wilcoxon signed-rank" in markdown


def test_seed_means_need_the_same_users():
    ranks = np.array([0, 5, 30])
    same = seed_mean_metrics([("f", np.array([1, 2, 3]), ranks), ("f", np.array([1, 2, 3]), ranks + 1)])
    assert same[2]["recall@20"].tolist() == [1.0, 1.0, 0.0]
    assert same[2]["ndcg@20"][0] == pytest.approx((1.0 + 1 / np.log2(3)) / 2)
    assert seed_mean_metrics([("f", np.array([1, 2, 3]), ranks), ("f", np.array([1, 2, 4]), ranks)]) is None


def _curve_record(model, seed, losses, best):
    return {"model": model, "seed": seed, "train_losses": losses, "best_epoch": best}


def test_training_health_flags_a_best_epoch_before_the_loss_fell():
    # The case the check was made for: best validation at epoch 4, loss 7.34 against 7.37.
    stalled = _curve_record("ComiRecSA", 2020, [7.37, 7.36, 7.36, 7.35, 7.34, 7.30, 7.2], 4)
    health = training_health(stalled)
    assert health["flagged"] and health["relative_drop"] == pytest.approx(1 - 7.34 / 7.37)
    # A model that trained: best at epoch 16 with its loss 15% below the first epoch's.
    trained = _curve_record("SASRec", 2020, [8.0 - 0.08 * e for e in range(20)], 16)
    assert not training_health(trained)["flagged"]
    assert training_health(trained)["relative_drop"] == pytest.approx(0.16)
    # Right at the threshold either side.
    assert training_health(_curve_record("M", 1, [1.0, 1.0 - MIN_LOSS_DROP + 1e-9], 1))["flagged"]
    assert not training_health(_curve_record("M", 1, [1.0, 1.0 - MIN_LOSS_DROP - 1e-9], 1))["flagged"]
    # Nothing to judge: one epoch, no curve (older records), a best epoch past the curve.
    for record in ({"train_losses": [7.0], "best_epoch": 0}, {"best_epoch": 3}, {"train_losses": [2.0, 1.0], "best_epoch": 5}):
        assert training_health(record) is None

    text = health_markdown([stalled, trained, {"model": "Old", "seed": 1, "best_epoch": 2}])
    assert "1 of 2 run(s) with a loss curve flagged" in text
    assert "**ComiRecSA seed 2020**: best epoch 4 of 7, loss 7.3400 against 7.3700 at epoch 0 (-0.4%)" in text
    assert "SASRec" not in text
    assert health_markdown([{"model": "Old", "seed": 1}]) == ""
