"""ESIM end to end: training data -> typical users -> interests -> embeddings -> concepts -> targets.

:func:`load_semantic_targets` is what a model calls; :func:`run_esim` does the work (or loads its
cached result) and :func:`dry_run` reports what a run would send without sending anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

import recbole_eimf
from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.backends import backend_identity, make_backend
from recbole_eimf.esim.backends.openai_compat import read_api_key, safe_url
from recbole_eimf.esim.cache import (
    AnswerCache, cache_lock, load_embeddings, load_targets, save_embeddings, save_targets, write_json, write_text,
)
from recbole_eimf.esim.concepts import build_concepts, build_targets
from recbole_eimf.esim.encoders import TfidfEncoder, encoder_identity, make_encoder
from recbole_eimf.esim.errors import EsimError
from recbole_eimf.esim.extraction import ExtractionStats, cached_answer, extract_interests
from recbole_eimf.esim.item_text import ItemCatalog, build_item_catalog
from recbole_eimf.esim.profiles import behavior_profiles, select_typical_users, text_profiles
from recbole_eimf.esim.prompts import PromptBuilder, PromptTemplate, prompt_key
from recbole_eimf.esim.report import DryRunReport, interests_markdown, interests_records, summary_text
from recbole_eimf.esim.sequences import TrainingSequences, training_sequences
from recbole_eimf.esim.settings import ESIM_KEYS, EsimSettings, sentence_transformers_available
from recbole_eimf.esim.threads import few_threads
from recbole_eimf.esim.tokens import TokenCounter

logger = logging.getLogger(__name__)

# 2: target tensors hold one row per distinct target, plus each user's row (1: one row per user).
FORMAT_VERSION = 2
TENSOR_NAMES = ("target_row", "labels", "interests", "interest_mask", "concepts", "user_cluster", "is_typical")


@dataclass
class SemanticTargets:
    """ESIM's output for a model (the contract: :mod:`recbole_eimf.esim`).

    Per user, indexed by RecBole's internal user id: ``target_row [n_users]`` long, the user's
    row of the target tensors (-1: no target); ``user_cluster [n_users]`` long (-1: no training
    data); ``is_typical [n_users]`` bool. Per target row (``R`` rows, one per distinct target):
    ``labels [R, P]`` float multi-hot concepts; ``interests [R, J, d_t]`` semantic interest
    embeddings (unit length, zero where masked); ``interest_mask [R, J]`` bool.
    ``concepts [P, d_t]``: unit-length prototypes.
    """

    target_row: torch.Tensor
    labels: torch.Tensor
    interests: torch.Tensor
    interest_mask: torch.Tensor
    concepts: torch.Tensor
    user_cluster: torch.Tensor
    is_typical: torch.Tensor
    manifest: dict = field(default_factory=dict)
    directory: Optional[Path] = None
    has_target: torch.Tensor = field(init=False, repr=False)  # [n_users] bool: target_row >= 0

    def __post_init__(self) -> None:
        self.has_target = self.target_row >= 0

    @property
    def n_users(self) -> int:
        return int(self.target_row.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_concepts(self) -> int:
        return int(self.concepts.shape[0])

    @property
    def semantic_dim(self) -> int:
        return int(self.concepts.shape[1])

    @property
    def max_interests(self) -> int:
        return int(self.interests.shape[1])

    def provenance(self) -> Dict[str, Any]:
        """Which targets these are, for a run record: the cache key (every input and setting that
        changes them, the resolved text encoder included), who stated the interests and who
        encoded them."""
        llm = self.manifest.get("llm") or {}
        return {
            "key": self.manifest.get("key"),
            "llm": ":".join(str(llm[k]) for k in ("backend", "model") if llm.get(k)) or None,
            "encoder": (self.manifest.get("encoder") or {}).get("key"),
            "users_with_target": int(self.has_target.sum()),
        }

    def of_users(self, users: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``labels [n, P]``, ``interests [n, J, d_t]`` and ``interest_mask [n, J]`` of ``users``
        ``[n]``, every one of which must have a target."""
        rows = self.target_row[users]
        if bool((rows < 0).any()):
            missing = users[rows < 0][:5].tolist()
            raise ValueError(f"users {missing} have no semantic target (see has_target)")
        return self.labels[rows], self.interests[rows], self.interest_mask[rows]

    def of_batch(
        self, users: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The targets of a batch's rows that have one: ``index [n]`` (their positions in
        ``users``), then ``labels [n, P]``, ``interests [n, J, d_t]`` and ``interest_mask [n, J]``.

        One lookup and one host sync (the number of rows) per batch, which matters on a GPU where
        most batches of ``semantic_scope: typical`` hold few or no such rows.
        """
        rows = self.target_row[users]
        index = (rows >= 0).nonzero().squeeze(1)
        rows = rows[index]
        return index, self.labels[rows], self.interests[rows], self.interest_mask[rows]

    def tensors(self) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in TENSOR_NAMES}

    def to(self, device) -> "SemanticTargets":
        moved = {name: t.to(device) for name, t in self.tensors().items()}
        return SemanticTargets(**moved, manifest=self.manifest, directory=self.directory)


@dataclass
class EsimResult:
    targets: SemanticTargets
    stats: Optional[ExtractionStats]
    from_cache: bool
    summary: str
    answers: dict = field(default_factory=dict)        # uid -> UserAnswer (empty when loaded from the cache)


def load_semantic_targets(config, train_dataset) -> SemanticTargets:
    """Semantic targets for the users of ``train_dataset``: built once, then loaded from ESIM's cache.

    ``config``: the RecBole ``Config`` (ESIM's keys, see ``properties/esim.yaml``);
    ``train_dataset``: the training dataset RecBole built (``train_data.dataset``), whose
    interactions are the only behaviour ESIM reads.
    """
    return run_esim(EsimSettings.from_config(config), train_dataset).targets


class _Timer:
    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            logger.debug(f"ESIM stage [{name}]: {self.seconds[name]:.2f}s")


class _Inputs:
    """What every ESIM run derives from the training data before any costly step."""

    def __init__(self, settings: EsimSettings, train_dataset, timer: _Timer) -> None:
        self.settings = settings
        self.dataset = train_dataset
        with timer.stage("sequences"):
            self.sequences: TrainingSequences = training_sequences(train_dataset)
        with timer.stage("item_text"):
            self.catalog: ItemCatalog = build_item_catalog(train_dataset, settings.text_fields)
        self.template = PromptTemplate(settings.prompt_template)
        self.identity = backend_identity(settings)
        self.encoder_id = encoder_identity(settings)
        self.user_tokens: List[str] = list(train_dataset.field2id_token[train_dataset.uid_field])
        record = {
            "format": FORMAT_VERSION,
            "dataset": settings.dataset,
            "split": settings.split,
            "train": self.sequences.fingerprint(),
            "items": self.catalog.fingerprint(),
            "template": self.template.sha256,
            "llm": self.identity,
            "encoder": self.encoder_id,
            "settings": {k: v for k, v in settings.config_record().items() if k in _RESULT_KEYS},
        }
        self.key = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:24]
        self.folder = settings.cache_dir / "targets" / self.key

    def n_users_with_data(self) -> int:
        return int((self.sequences.lengths() > 0).sum())


# Settings that change the result (the rest, such as concurrency or prices, do not).
_RESULT_KEYS = {
    "seed", "text_fields", "cluster_on", "behavior_dim", "n_clusters", "users_per_cluster", "min_history",
    "max_prompt_items", "prompt_token_budget", "max_interests", "tfidf_dim", "n_concepts", "semantic_scope",
}


def _item_embeddings(inputs: _Inputs, encoder, timer: _Timer) -> np.ndarray:
    settings = inputs.settings
    texts = inputs.catalog.texts()
    with timer.stage("item_embeddings"):
        if isinstance(encoder, TfidfEncoder):
            with few_threads():
                encoder.fit(texts[1:])
        folder = settings.cache_dir / "item_embeddings"
        key = hashlib.sha256(f"{encoder.key}|{inputs.catalog.fingerprint()}".encode()).hexdigest()[:24]
        embeddings = load_embeddings(folder, key, len(texts)) if encoder.cache_item_embeddings else None
        if embeddings is None:
            logger.info(f"ESIM: encoding the text of {len(texts) - 1} items with [{encoder.key}]")
            with few_threads() if isinstance(encoder, TfidfEncoder) else nullcontext():
                embeddings = encoder.encode(texts, show_progress=settings.show_progress)
            if encoder.cache_item_embeddings:
                save_embeddings(folder, key, embeddings, {"encoder": encoder.key, "items": inputs.catalog.fingerprint(),
                                                          "dataset": settings.dataset, "n_items": len(texts)})
        else:
            logger.info(f"ESIM: item embeddings of [{encoder.key}] loaded from {folder}")
    return embeddings


def _select(inputs: _Inputs, item_embeddings: Optional[np.ndarray], timer: _Timer):
    settings = inputs.settings
    with timer.stage("typical_users"), few_threads():
        if settings.cluster_on == "text":
            profiles = text_profiles(inputs.sequences, item_embeddings)
        else:
            profiles = behavior_profiles(inputs.sequences, settings.behavior_dim, settings.seed)
        selection = select_typical_users(
            profiles, inputs.sequences.lengths(), inputs.sequences.n_users, settings.n_clusters,
            settings.users_per_cluster, settings.min_history, settings.seed,
        )
    logger.info(
        f"ESIM: {len(selection.typical_users)} typical users from {selection.n_clusters} clusters of "
        f"{selection.n_profiled} users with training data ({selection.n_eligible} with >= "
        f"{settings.min_history} items)"
    )
    return selection


def _prompts(inputs: _Inputs, selection, timer: _Timer):
    settings = inputs.settings
    with timer.stage("prompts"):
        counter = TokenCounter(
            settings.llm_model if settings.llm_backend == "openai" else None, settings.cache_dir.parent / "tiktoken"
        )
        builder = PromptBuilder(
            inputs.template, inputs.catalog, counter, settings.max_prompt_items,
            settings.prompt_token_budget, settings.max_interests,
        )
        prompts = [builder.build(int(uid), inputs.sequences.sequences[uid]) for uid in selection.typical_users]
    return prompts, counter


def check_credentials(settings: EsimSettings) -> None:
    """Raise the ConfigError about a missing API key before any work, where a key will be needed."""
    if settings.llm_backend == "openai":
        read_api_key(settings.llm_api_key_env, "llm_backend 'openai'")
    if settings.text_encoder == "openai":
        read_api_key(settings.llm_api_key_env, "text_encoder 'openai'")


def check_text_encoder(settings: EsimSettings, folder: Path) -> None:
    """Raise the ConfigError about a text encoder that is not installed before any work, once the
    cache (``folder``: where these settings' targets would be) has not answered."""
    if settings.text_encoder == "sentence-transformers" and not sentence_transformers_available():
        raise ConfigError(
            f"`text_encoder` sentence-transformers is not installed, and ESIM's cache holds no targets for these "
            f"settings ({folder}): pip install \"recbole-eimf[text]\", or build the targets where it is installed "
            "and bring the cache along (`esim_cache_dir`; benchmarks/gpu/README.md), or choose --text_encoder=tfidf"
        )


def run_esim(settings: EsimSettings, train_dataset, rebuild: bool = False) -> EsimResult:
    """Build ESIM's semantic targets, or load them when this exact result is cached and complete.

    Cached targets that lack some typical users' answers (their requests failed) are not final: a
    rerun asks exactly those prompts again and rebuilds the targets when a new answer came; where
    it cannot ask (no key, no encoder, endpoint unreachable) the cached targets stand. One process
    at a time works on a cache (:func:`cache.cache_lock`); one that waited reuses what the other
    one paid for.
    """
    timer = _Timer()
    start = time.perf_counter()
    inputs = _Inputs(settings, train_dataset, timer)
    cached = None if rebuild else _load_cached(inputs)
    if cached is not None and not unanswered(cached.targets.manifest):
        return cached
    with cache_lock(settings.cache_dir):
        if not rebuild:  # what another process wrote while this one waited
            cached = _load_cached(inputs)
            if cached is not None and not unanswered(cached.targets.manifest):
                return cached
        try:
            return _build(inputs, timer, start, cached)
        except ConfigError as err:  # (LLMFatalError included) targets carried to a machine without a key
            if cached is None:
                raise
            logger.warning(f"ESIM: cannot ask the {unanswered(cached.targets.manifest)} typical users without an "
                           f"answer again ({err}); using the cached targets, which lack them")
            return cached


def unanswered(manifest: dict) -> int:
    """How many typical users of a targets manifest got no readable answer from the LLM (0 when
    no LLM was asked: the extractive backend's misses are final)."""
    if not (manifest.get("llm") or {}).get("uses_llm"):
        return 0
    extraction = (manifest.get("counts") or {}).get("extraction") or {}
    return int(extraction.get("failed_requests", 0)) + int(extraction.get("failed_parse", 0))


def _load_cached(inputs: _Inputs) -> Optional[EsimResult]:
    loaded = load_targets(inputs.folder, inputs.key)
    if loaded is None:
        return None
    tensors, manifest = loaded
    targets = SemanticTargets(**{n: tensors[n] for n in TENSOR_NAMES}, manifest=manifest, directory=inputs.folder)
    missing = unanswered(manifest)
    if missing:
        logger.info(f"ESIM: the cached targets in {inputs.folder} lack the answers of {missing} typical users "
                    "(their requests failed): asking those again")
    else:
        logger.info(f"ESIM: semantic targets loaded from the cache {inputs.folder} (no request made)")
    summary = summary_text(
        inputs.settings.dataset, inputs.identity, ExtractionStats(), inputs.n_users_with_data(),
        int(targets.is_typical.sum()), int(targets.has_target.sum()), targets.n_concepts, inputs.folder, True,
    )
    return EsimResult(targets=targets, stats=None, from_cache=True, summary=summary)


def _build(inputs: _Inputs, timer: _Timer, start: float, previous: Optional[EsimResult]) -> EsimResult:
    """The costly part of :func:`run_esim`; ``previous``: cached targets that lack some answers."""
    settings, identity = inputs.settings, inputs.identity
    check_text_encoder(settings, inputs.folder)  # a missing encoder fails now, not after the costly steps

    if not identity["uses_llm"]:
        how = "chosen by llm_backend: auto, since llm_base_url is not set" if (
            settings.llm_backend_requested == "auto") else "as configured"
        logger.warning(
            f"ESIM: no LLM is used ({how}): interests are extracted from the item text of each typical "
            "user's training items (llm_backend extractive). To ask an LLM, set llm_model and llm_base_url "
            "(or llm_backend openai for OpenAI's own endpoint), or llm_backend local."
        )
    check_credentials(settings)  # a missing key fails now, not after the costly steps
    encoder = make_encoder(settings)
    item_embeddings = None
    if settings.cluster_on == "text" or settings.llm_backend == "extractive" or isinstance(encoder, TfidfEncoder):
        item_embeddings = _item_embeddings(inputs, encoder, timer)   # (tfidf: also fits the encoder)
    selection = _select(inputs, item_embeddings, timer)
    prompts, counter = _prompts(inputs, selection, timer)
    if not prompts:
        raise EsimError(
            f"ESIM found no typical user: no user has >= min_history [{settings.min_history}] training items"
        )

    backend = make_backend(settings, inputs.catalog, item_embeddings)
    if backend.uses_llm:
        logger.info(f"ESIM: asking {backend.describe()} about {len(prompts)} typical users")
    else:
        logger.info(f"ESIM: extracting the interests of {len(prompts)} typical users from their item text")
    cache = AnswerCache(settings.cache_dir / "answers.jsonl") if backend.cacheable else None
    try:
        with timer.stage("llm"), few_threads() if not backend.uses_llm else nullcontext():
            answers, stats = extract_interests(
                prompts, backend, cache, settings.max_interests, settings.llm_concurrency, settings.show_progress,
            )
    finally:
        backend.close()
    if backend.uses_llm:
        logger.info(
            f"ESIM: {stats.calls} requests answered, {stats.cache_hits} answers from the cache, {stats.retries} "
            f"retries; {stats.ok} users ok ({stats.repaired} after a repair), {stats.failed_requests} failed "
            f"requests, {stats.failed_parse} unreadable answers"
        )
    failed = stats.failed_requests + stats.failed_parse
    if failed:
        logger.warning(f"ESIM: {failed} of {len(prompts)} typical users have no interests (see interests.md); "
                       "a rerun asks them again")
    if previous is not None and stats.new_answers == 0:
        logger.info(f"ESIM: no new answer for the {failed} users asked again: the cached targets stand")
        return previous
    if stats.ok == 0:
        _fail_without_answers(inputs, answers, selection, stats, len(prompts))

    with timer.stage("interest_embeddings"):
        ok_uids = [p.uid for p in prompts if answers[p.uid].ok]
        texts = [i.text() for uid in ok_uids for i in answers[uid].interests]
        with few_threads() if isinstance(encoder, TfidfEncoder) else nullcontext():
            flat = encoder.encode(texts, show_progress=False) if texts else np.zeros((0, 1), dtype=np.float32)
    with timer.stage("concepts"), few_threads():
        concepts = build_concepts(flat, settings.n_concepts, settings.seed)
        user_embeddings, user_concepts, offset = {}, {}, 0
        for uid in ok_uids:
            n = len(answers[uid].interests)
            user_embeddings[uid] = flat[offset: offset + n]
            user_concepts[uid] = concepts.assignment[offset: offset + n]
            offset += n
        arrays = build_targets(
            inputs.sequences.n_users, settings.max_interests, user_embeddings, user_concepts,
            concepts.prototypes, selection.user_cluster, settings.semantic_scope,
        )
    is_typical = np.zeros(inputs.sequences.n_users, dtype=bool)
    is_typical[selection.typical_users] = True
    targets = SemanticTargets(
        target_row=torch.from_numpy(arrays.target_row),
        labels=torch.from_numpy(arrays.labels),
        interests=torch.from_numpy(arrays.interests),
        interest_mask=torch.from_numpy(arrays.interest_mask),
        concepts=torch.from_numpy(concepts.prototypes),
        user_cluster=torch.from_numpy(selection.user_cluster),
        is_typical=torch.from_numpy(is_typical),
        directory=inputs.folder,
    )

    with timer.stage("write"):
        concepts_of = {uid: [int(c) for c in user_concepts[uid]] for uid in user_concepts}
        n_users = inputs.n_users_with_data()
        manifest = {
            "key": inputs.key,
            "format": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "recbole_eimf_version": recbole_eimf.__version__,
            "dataset": settings.dataset,
            "split": settings.split,
            "train_fingerprint": inputs.sequences.fingerprint(),
            "items_fingerprint": inputs.catalog.fingerprint(),
            "text_fields": list(settings.text_fields),
            "template": {"path": str(settings.prompt_template), "sha256": inputs.template.sha256},
            "llm": identity,
            "llm_endpoint": safe_url(settings.llm_base_url) if settings.llm_backend == "openai" else None,
            "encoder": {"key": encoder.key, "dim": int(flat.shape[1])},
            "tokenizer": counter.describe(),
            "config": {k: v for k, v in settings.config_record().items() if k in ESIM_KEYS or k in (
                "llm_backend_requested", "seed", "cache_dir", "prompt_template")},
            "counts": {
                "users_with_training_data": n_users,
                "typical_users": len(prompts),
                "share_typical": len(prompts) / max(1, n_users),
                "clusters": selection.n_clusters,
                "users_with_target": int(arrays.has_target.sum()),
                "concepts": int(concepts.prototypes.shape[0]),
                "interests": int(flat.shape[0]),
                "prompt_tokens": int(sum(p.n_tokens for p in prompts)),
                "extraction": stats.as_dict(),
            },
            "shapes": {name: list(t.shape) for name, t in targets.tensors().items()},
            "files": ["semantic_targets.pt", "manifest.json", "interests.md", "interests.json"],
        }
        _write_reports(inputs, answers, selection, concepts_of, encoder.key, stats)
    manifest["stage_seconds"] = {k: round(v, 3) for k, v in timer.seconds.items()}
    manifest["total_seconds"] = round(time.perf_counter() - start, 3)
    save_targets(inputs.folder, targets.tensors(), manifest)
    targets.manifest = manifest
    logger.info(f"ESIM: semantic targets written to {inputs.folder}; readable interests: {inputs.folder / 'interests.md'}")
    summary = summary_text(
        settings.dataset, identity, stats, n_users, len(prompts), int(arrays.has_target.sum()),
        targets.n_concepts, inputs.folder, False,
    )
    return EsimResult(targets=targets, stats=stats, from_cache=False, summary=summary, answers=answers)


def _write_reports(inputs: _Inputs, answers, selection, concepts_of, encoder_key: str, stats) -> None:
    """interests.json and the readable interests.md, next to where the targets go."""
    cluster_of = {int(uid): selection.cluster_of(int(uid)) for uid in selection.typical_users}
    records = interests_records(answers, cluster_of, inputs.user_tokens, concepts_of)
    write_json(inputs.folder / "interests.json", records)
    write_text(inputs.folder / "interests.md", interests_markdown(
        inputs.settings.dataset, answers, cluster_of, inputs.user_tokens, concepts_of, inputs.catalog,
        inputs.identity, encoder_key, stats, inputs.n_users_with_data(),
    ))


def _fail_without_answers(inputs: _Inputs, answers, selection, stats, n_prompts: int) -> None:
    """Every typical user failed: write the report that says why, then raise the error naming the
    latest failure and the endpoint (no targets are written: a rerun asks everything again)."""
    _write_reports(inputs, answers, selection, {}, "none (no interest to encode)", stats)
    settings = inputs.settings
    where = f" from [{safe_url(settings.llm_base_url)}]" if settings.llm_backend == "openai" else ""
    raise EsimError(
        f"ESIM got no readable answer{where} for any of the {n_prompts} typical users ({stats.failed_requests} "
        f"requests failed, {stats.failed_parse} answers unreadable); the latest: {stats.last_error}. Report: "
        f"{inputs.folder / 'interests.md'}. Answers are cached as they come: a rerun asks only for what is missing"
    )


def dry_run(settings: EsimSettings, train_dataset) -> DryRunReport:
    """What :func:`run_esim` would send and what it would cost; no LLM or embedding request is made."""
    timer = _Timer()
    inputs = _Inputs(settings, train_dataset, timer)
    note = ""
    item_embeddings = None
    if settings.cluster_on == "text":
        if settings.text_encoder == "openai":
            note = ("text profiles would need item embeddings from the openai encoder (a paid request); "
                    "the typical users here were chosen with tfidf profiles instead, and the embedding "
                    "requests are not in the cost")
            encoder = TfidfEncoder(dim=settings.tfidf_dim, seed=settings.seed)
        else:
            encoder = make_encoder(settings)
        item_embeddings = _item_embeddings(inputs, encoder, timer)
    selection = _select(inputs, item_embeddings, timer)
    prompts, counter = _prompts(inputs, selection, timer)
    identity = inputs.identity
    n_cached, to_send = 0, []
    if identity["uses_llm"]:
        path = settings.cache_dir / "answers.jsonl"
        cache = AnswerCache(path) if path.is_file() else None
        to_send = [p for p in prompts if cached_answer(
            cache, prompt_key(p.as_messages(), identity["model"], identity["decoding"]), settings.max_interests) is None]
        n_cached = len(prompts) - len(to_send)
    cached = load_targets(inputs.folder, inputs.key)
    if cached is not None:
        missing = unanswered(cached[1])
        if missing:
            what = (f"these targets are cached in {inputs.folder} without the answers of {missing} typical users: "
                    f"a run asks the {len(to_send)} prompts without a readable answer again")
        else:
            what = f"these targets are already cached in {inputs.folder}: a run makes no request"
            to_send = []
        note = (note + "; " if note else "") + what
    return DryRunReport(
        dataset=settings.dataset,
        identity=identity,
        n_users=inputs.n_users_with_data(),
        n_typical=len(prompts),
        n_clusters=selection.n_clusters,
        n_cached=n_cached,
        n_to_send=len(to_send),
        prompt_tokens_to_send=int(sum(p.n_tokens for p in to_send)),
        tokenizer=counter.describe(),
        max_output_tokens=settings.llm_max_tokens if identity["uses_llm"] else 0,
        price_in=settings.llm_price_per_1k_input_tokens,
        price_out=settings.llm_price_per_1k_output_tokens,
        encoder_note=note,
    )
