"""ESIM end to end on ml-100k (extractive backend, tfidf encoder): targets, cache, scope, dry run, CLI."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim import EsimSettings, SemanticTargets, dry_run, load_semantic_targets, run_esim
from recbole_eimf.esim.sequences import training_sequences

ROOT = Path(__file__).resolve().parents[1]
SMALL_ESIM = dict(text_encoder="tfidf", n_clusters=5, users_per_cluster=4, n_concepts=8, tfidf_dim=64)


def settings_for(config, tmp_path, **changes):
    values = dict(SMALL_ESIM, esim_cache_dir=str(tmp_path / "esim"))
    values.update(changes)
    return EsimSettings.from_config(config, **values)


def _held_out(loader):
    ds = loader._dataset
    return dict(zip(ds.inter_feat[ds.uid_field].numpy().tolist(), ds.inter_feat[ds.iid_field].numpy().tolist()))


def test_extractive_targets_end_to_end_from_training_items_only_then_from_the_cache(ml100k, tmp_path, caplog):
    config, dataset, train, valid, test = ml100k
    settings = settings_for(config, tmp_path)
    assert settings.llm_backend == "extractive" and settings.llm_backend_requested == "auto"
    with caplog.at_level(logging.INFO, logger="recbole_eimf.esim"):
        result = run_esim(settings, train._dataset)
    assert "no LLM is used" in caplog.text
    targets = result.targets
    n_users = train._dataset.user_num
    assert isinstance(targets, SemanticTargets) and not result.from_cache
    # One row per distinct target (here: per typical user), and each user's row.
    rows = targets.n_rows
    assert targets.target_row.shape == (n_users,) and targets.target_row.dtype == torch.int64
    assert rows == int(targets.has_target.sum()) and torch.equal(targets.has_target, targets.target_row >= 0)
    assert torch.equal(targets.target_row[targets.has_target].sort().values, torch.arange(rows))
    assert targets.labels.shape == (rows, targets.n_concepts) and targets.labels.dtype == torch.float32
    assert targets.interests.shape == (rows, 4, targets.semantic_dim)   # J = n_interests of ComiRecSA
    assert targets.interest_mask.shape == (rows, 4) and targets.interest_mask.dtype == torch.bool
    assert targets.concepts.shape == (targets.n_concepts, targets.semantic_dim) and targets.n_concepts <= 8
    assert torch.allclose(targets.concepts.norm(dim=1), torch.ones(targets.n_concepts), atol=1e-5)
    # Invariants of the contract.
    assert targets.interest_mask.any(1).all() and targets.labels.bool().any(1).all()
    assert torch.equal(targets.has_target, targets.is_typical)            # scope typical, nothing failed
    assert int(targets.is_typical.sum()) == 20 and not targets.has_target[0]
    users = targets.has_target.nonzero().squeeze(1)[[2, 0, 2]]
    labels, interests, mask = targets.of_users(users)
    assert torch.equal(labels[0], labels[2]) and torch.equal(interests[1], targets.interests[targets.target_row[users[1]]])
    assert mask.shape == (3, 4)
    with pytest.raises(ValueError, match=r"users \[0\] have no semantic target"):
        targets.of_users(torch.tensor([0, int(users[0])]))
    batch = torch.tensor([0, int(users[1]), 0, int(users[0])])              # rows 1 and 3 have targets
    index, batch_labels, batch_interests, batch_mask = targets.of_batch(batch)
    assert index.tolist() == [1, 3]
    for got, want in zip((batch_labels, batch_interests, batch_mask), targets.of_users(users[[1, 0]])):
        assert torch.equal(got, want)
    index, batch_labels, _, _ = targets.of_batch(torch.tensor([0, 0]))
    assert index.numel() == 0 and batch_labels.shape == (0, targets.labels.size(1))
    norms = targets.interests.norm(dim=2)
    assert torch.allclose(norms[targets.interest_mask], torch.ones(int(targets.interest_mask.sum())), atol=1e-4)
    assert (norms[~targets.interest_mask] == 0).all()

    # Files: tensors, manifest, the readable interests next to their items.
    folder = targets.directory
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dataset"] == "ml-100k" and "valid_and_test" in manifest["split"]
    assert manifest["llm"] == {"backend": "extractive", "model": "extractive-v1", "decoding": {"max_interests": 4},
                               "uses_llm": False}
    assert manifest["encoder"]["key"].startswith("tfidf") and len(manifest["template"]["sha256"]) == 64
    assert manifest["counts"]["typical_users"] == 20 and manifest["config"]["n_clusters"] == 5
    assert set(manifest["stage_seconds"]) >= {"item_embeddings", "typical_users", "prompts", "llm", "concepts"}
    readable = (folder / "interests.md").read_text()
    assert "no LLM was used" in readable and readable.count("### User") == 20

    # Training items only: every item shown for a user is in their training sequence, none held out.
    seqs = training_sequences(train._dataset)
    valid_item, test_item = _held_out(valid), _held_out(test)
    records = json.loads((folder / "interests.json").read_text())
    assert len(records) == 20
    for record in records:
        uid = record["uid"]
        assert set(record["item_ids"]) <= set(seqs.sequences[uid].tolist())
        assert valid_item[uid] not in record["item_ids"] and test_item[uid] not in record["item_ids"]
        assert record["item_ids"] == seqs.sequences[uid][-len(record["item_ids"]):].tolist()   # last N, in order
        assert record["interests"] and record["status"] == "ok"
    for answer in result.answers.values():
        assert {valid_item[answer.uid], test_item[answer.uid]}.isdisjoint(answer.prompt.item_ids)

    # The public function a model calls: same targets, from the cache.
    caplog.clear()
    changes = dict(SMALL_ESIM, esim_cache_dir=str(tmp_path / "esim"))
    originals = {key: config[key] for key in changes}   # the config is shared by the session: restore it
    for key, value in changes.items():
        config[key] = value
    try:
        with caplog.at_level(logging.INFO, logger="recbole_eimf.esim"):
            again = load_semantic_targets(config, train._dataset)
    finally:
        for key, value in originals.items():
            config[key] = value
    assert "loaded from the cache" in caplog.text and "no LLM is used" not in caplog.text
    for name, tensor in targets.tensors().items():
        assert torch.equal(tensor, getattr(again, name)), name
    assert again.manifest["key"] == manifest["key"]


def test_cluster_scope_gives_every_clustered_user_its_clusters_targets(ml100k, tmp_path):
    config, _, train, _, _ = ml100k
    typical = run_esim(settings_for(config, tmp_path), train._dataset).targets
    cluster = run_esim(settings_for(config, tmp_path, semantic_scope="cluster"), train._dataset).targets
    assert typical.directory != cluster.directory                # scope is part of the cache key
    assert int(cluster.has_target.sum()) == 943                  # every user with training data
    own = typical.has_target.nonzero().squeeze(1)
    for mine, theirs in zip(cluster.of_users(own), typical.of_users(own)):   # typical users keep their own
        assert torch.equal(mine, theirs)
    inheriting = 0
    for c in range(5):
        members = ((cluster.user_cluster == c) & ~typical.is_typical).nonzero().squeeze(1)
        if len(members):
            inheriting += 1
            rows = cluster.target_row[members]
            assert (rows == rows[0]).all() and cluster.labels[rows[0]].sum() >= 1  # the cluster shares one row
    assert cluster.n_rows == typical.n_rows + inheriting


def test_behavior_profiles_and_a_custom_template_change_the_result(ml100k, tmp_path):
    config, _, train, _, _ = ml100k
    base = run_esim(settings_for(config, tmp_path), train._dataset).targets
    template = tmp_path / "short.txt"
    template.write_text("[user]\nName at most $max_interests tastes of a user who chose:\n$items\nAnswer in JSON.\n")
    custom = run_esim(settings_for(config, tmp_path, prompt_template=str(template), cluster_on="behavior"),
                      train._dataset)
    assert custom.targets.directory != base.directory
    assert custom.targets.manifest["template"]["path"] == str(template)
    prompt = next(iter(custom.answers.values())).prompt
    assert prompt.messages[0][0] == "user" and prompt.messages[0][1].startswith("Name at most 4 tastes")


def test_dry_run_reports_without_any_request(ml100k, tmp_path, monkeypatch):
    from support.loopback import LoopbackLLMServer

    config, _, train, _, _ = ml100k
    monkeypatch.setenv("ESIM_TEST_KEY", "sk-test-dry-run")
    with LoopbackLLMServer() as server:
        settings = settings_for(config, tmp_path, llm_base_url=server.url, llm_model="gpt-4o-mini",
                                llm_api_key_env="ESIM_TEST_KEY", llm_price_per_1k_input_tokens=0.15,
                                llm_price_per_1k_output_tokens=0.6, llm_max_tokens=100)
        report = dry_run(settings, train._dataset)
        assert server.requests == []
        assert report.n_typical == report.n_to_send == 20 and report.n_cached == 0
        assert report.prompt_tokens_to_send > 20 * 100
        cost_in, cost_out = report.cost()
        assert cost_in == pytest.approx(report.prompt_tokens_to_send / 1000 * 0.15)
        assert cost_out == pytest.approx(20 * 100 / 1000 * 0.6)
        text = report.format()
        assert "no request was made" in text and "users to send:        20" in text and "o200k_base" in text

        run_esim(settings, train._dataset)
        assert len(server.chat_requests()) == 20
        after = dry_run(settings, train._dataset)
        assert after.n_to_send == 0 and after.prompt_tokens_to_send == 0 and "already cached" in after.format()
        assert len(server.requests) == 20
    unpriced = dry_run(settings_for(config, tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="other",
                                    llm_api_key_env="ESIM_TEST_KEY"), train._dataset)
    assert "unknown: set llm_price_per_1k_input_tokens" in unpriced.format()


def test_bad_esim_values_raise_config_errors_naming_the_key(ml100k, tmp_path, monkeypatch):
    config, _, _, _, _ = ml100k
    for key, value in [("n_clusters", 0), ("users_per_cluster", "many"), ("cluster_on", "graph"),
                       ("llm_backend", "gpt"), ("semantic_scope", "everyone"), ("text_encoder", "bert"),
                       ("prompt_template", str(tmp_path / "nope.txt")), ("llm_timeout", -1),
                       ("text_fields", [1, 2]), ("prompt_token_budget", 3)]:
        with pytest.raises(ConfigError, match=f"`{key}`"):
            settings_for(config, tmp_path, **{key: value})
    with pytest.raises(ConfigError, match="`llm_model`"):
        settings_for(config, tmp_path, llm_backend="openai")
    assert settings_for(config, tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="m").llm_backend == "openai"
    # A list typed on the command line reaches the config as text.
    assert settings_for(config, tmp_path, text_fields="[movie_title,class]").text_fields == ("movie_title", "class")
    assert settings_for(config, tmp_path).text_fields == ("movie_title", "class")   # props/dataset/ml-100k.yaml


def run_cli(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_eimf.py"), "--stage=esim", "--dataset=ml-100k", *args],
        capture_output=True, text=True, cwd=cwd, timeout=300, env=env,
    )


def test_cli_stage_esim_runs_with_no_api_key_and_dry_run_prints_the_estimate(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    small = ["--text_encoder=tfidf", "--n_clusters=4", "--users_per_cluster=3", "--n_concepts=6", "--state=WARNING"]
    proc = run_cli(*small, "--dry_run=True", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no request was made" in proc.stdout and "typical users:        12 of 943" in proc.stdout
    assert not (tmp_path / "saved" / "esim" / "ml-100k" / "targets").exists()

    proc = run_cli(*small, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no LLM was used" in proc.stdout and "no LLM is used" in proc.stderr
    readable = list((tmp_path / "saved" / "esim" / "ml-100k" / "targets").glob("*/interests.md"))
    assert len(readable) == 1 and str(readable[0].relative_to(tmp_path)) in proc.stdout
    assert readable[0].read_text().count("### User") == 12
