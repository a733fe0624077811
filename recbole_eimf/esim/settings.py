"""ESIM's config keys, read once from a RecBole ``Config`` and checked.

Every key has its default and a one-line description in ``recbole_eimf/properties/esim.yaml``;
per-dataset ``text_fields`` live in ``properties/dataset/<dataset>.yaml``. A bad value raises
:class:`~recbole_eimf.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

from recbole_eimf import secrets
from recbole_eimf.errors import ConfigError

DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "interests.txt"

CLUSTER_ON = ("text", "behavior")
LLM_BACKENDS = ("auto", "extractive", "openai", "local")
TEXT_ENCODERS = ("auto", "sentence-transformers", "openai", "tfidf")
SEMANTIC_SCOPES = ("typical", "cluster")

#: The config keys ESIM reads (all of them are recorded in the manifest of its outputs).
ESIM_KEYS = (
    "text_fields", "cluster_on", "behavior_dim", "n_clusters", "users_per_cluster", "min_history",
    "max_prompt_items", "prompt_token_budget", "prompt_template", "max_interests",
    "llm_backend", "llm_base_url", "llm_model", "llm_api_key_env", "llm_concurrency",
    "llm_max_retries", "llm_retry_backoff", "llm_timeout", "llm_max_tokens", "llm_temperature",
    "llm_price_per_1k_input_tokens", "llm_price_per_1k_output_tokens", "llm_local_threads",
    "text_encoder", "text_encoder_model", "text_encoder_base_url", "text_encoder_batch_size",
    "tfidf_dim", "n_concepts", "semantic_scope", "esim_cache_dir", "esim_seed",
)


@dataclass(frozen=True)
class EsimSettings:
    """The checked values of ESIM's config keys (see ``properties/esim.yaml``)."""

    dataset: str
    split: str                      # RecBole's eval_args, as text (recorded in the manifest)
    seed: int
    show_progress: bool
    device: str
    text_fields: Tuple[str, ...]
    cluster_on: str
    behavior_dim: int
    n_clusters: Optional[int]       # None: 'auto', chosen from the number of users (profiles.auto_clusters)
    users_per_cluster: int
    min_history: int
    max_prompt_items: int
    prompt_token_budget: int
    prompt_template: Path
    max_interests: int
    llm_backend: str                # resolved: extractive, openai or local (never auto)
    llm_backend_requested: str      # as configured (auto, when it was left to ESIM)
    llm_base_url: Optional[str]
    llm_model: Optional[str]
    llm_api_key_env: Optional[str]
    llm_concurrency: int
    llm_max_retries: int
    llm_retry_backoff: float
    llm_timeout: float
    llm_max_tokens: int
    llm_temperature: float
    llm_price_per_1k_input_tokens: Optional[float]
    llm_price_per_1k_output_tokens: Optional[float]
    llm_local_threads: Optional[int]
    text_encoder: str               # resolved: sentence-transformers, openai or tfidf (never auto)
    text_encoder_model: Optional[str]
    text_encoder_base_url: Optional[str]
    text_encoder_batch_size: int
    tfidf_dim: int
    n_concepts: int
    semantic_scope: str
    cache_dir: Path                 # <esim_cache_dir>/<dataset>

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> "EsimSettings":
        """Read and check ESIM's keys from a RecBole ``Config`` (``overrides`` win over it)."""

        def get(key: str, default: Any = None) -> Any:
            if key in overrides:
                return overrides[key]
            value = config[key]
            return default if value is None else value

        unknown = set(overrides) - set(ESIM_KEYS) - {"seed", "show_progress", "dataset", "device"}
        if unknown:
            raise TypeError(f"not ESIM config keys: {sorted(unknown)}")

        # No secret in a value that is logged and recorded (Config checks the same on creation).
        secrets.check_config({key: get(key) for key in (
            "llm_base_url", "text_encoder_base_url", "llm_api_key_env", "llm_api_key")})
        backend_requested = _choice("llm_backend", get("llm_backend", "auto"), LLM_BACKENDS)
        base_url = _optional_str("llm_base_url", get("llm_base_url"))
        backend = backend_requested
        if backend == "auto":
            backend = "openai" if base_url else "extractive"

        encoder = _choice("text_encoder", get("text_encoder", "auto"), TEXT_ENCODERS)
        if encoder == "auto":
            encoder = "sentence-transformers" if sentence_transformers_available() else "tfidf"

        n_interests = get("n_interests")
        max_interests = get("max_interests", n_interests if n_interests is not None else 4)

        template = get("prompt_template")
        template_path = DEFAULT_TEMPLATE if template in (None, "") else Path(str(template)).expanduser()
        if not template_path.is_file():
            raise ConfigError(f"`prompt_template` [{template}] is not a file")

        cache_root = get("esim_cache_dir") or str(Path(get("checkpoint_dir", "saved")) / "esim")
        dataset = str(get("dataset"))
        key_env = _optional_str("llm_api_key_env", get("llm_api_key_env"))

        model = _optional_str("llm_model", get("llm_model"))
        if backend == "openai" and not model:
            raise ConfigError(
                "`llm_model` must name the model to ask when llm_backend is 'openai' "
                "(for example --llm_model=gpt-4o-mini, or the name your server serves)"
            )

        settings = cls(
            dataset=dataset,
            split=_split_text(get("eval_args", {})),
            # ESIM's own seed (clustering, concepts), so that training seeds can share one cache.
            seed=_int("esim_seed", get("esim_seed")) if get("esim_seed") is not None else _int("seed", get("seed", 2020)),
            show_progress=bool(get("show_progress", False)),
            device=str(get("device", "cpu")),
            text_fields=_str_list("text_fields", get("text_fields", [])),
            cluster_on=_choice("cluster_on", get("cluster_on", "text"), CLUSTER_ON),
            behavior_dim=_int("behavior_dim", get("behavior_dim", 64), minimum=1),
            n_clusters=_int_or_auto("n_clusters", get("n_clusters", "auto"), minimum=1),
            users_per_cluster=_int("users_per_cluster", get("users_per_cluster", 20), minimum=1),
            min_history=_int("min_history", get("min_history", 5), minimum=1),
            max_prompt_items=_int("max_prompt_items", get("max_prompt_items", 20), minimum=1),
            prompt_token_budget=_int("prompt_token_budget", get("prompt_token_budget", 1024), minimum=16),
            prompt_template=template_path,
            max_interests=_int("max_interests", max_interests, minimum=1),
            llm_backend=backend,
            llm_backend_requested=backend_requested,
            llm_base_url=base_url,
            llm_model=model,
            llm_api_key_env=key_env,
            llm_concurrency=_int("llm_concurrency", get("llm_concurrency", 8), minimum=1),
            llm_max_retries=_int("llm_max_retries", get("llm_max_retries", 4), minimum=0),
            llm_retry_backoff=_float("llm_retry_backoff", get("llm_retry_backoff", 1.0), minimum=0.0),
            llm_timeout=_float("llm_timeout", get("llm_timeout", 60.0), minimum=0.001),
            llm_max_tokens=_int("llm_max_tokens", get("llm_max_tokens", 512), minimum=1),
            llm_temperature=_float("llm_temperature", get("llm_temperature", 0.0), minimum=0.0),
            llm_price_per_1k_input_tokens=_optional_float(
                "llm_price_per_1k_input_tokens", get("llm_price_per_1k_input_tokens")),
            llm_price_per_1k_output_tokens=_optional_float(
                "llm_price_per_1k_output_tokens", get("llm_price_per_1k_output_tokens")),
            llm_local_threads=None if get("llm_local_threads") is None else _int(
                "llm_local_threads", get("llm_local_threads"), minimum=1),
            text_encoder=encoder,
            text_encoder_model=_optional_str("text_encoder_model", get("text_encoder_model")),
            text_encoder_base_url=_optional_str("text_encoder_base_url", get("text_encoder_base_url")),
            text_encoder_batch_size=_int("text_encoder_batch_size", get("text_encoder_batch_size", 64), minimum=1),
            tfidf_dim=_int("tfidf_dim", get("tfidf_dim", 256), minimum=2),
            n_concepts=_int("n_concepts", get("n_concepts", 32), minimum=1),
            semantic_scope=_choice("semantic_scope", get("semantic_scope", "typical"), SEMANTIC_SCOPES),
            cache_dir=Path(str(cache_root)).expanduser() / dataset,
        )
        return settings

    def config_record(self) -> dict:
        """The settings as plain JSON values, for manifests (holds no secret: only the key's variable name)."""
        record = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            record[field.name] = value
        return record


def _split_text(eval_args: Any) -> str:
    if isinstance(eval_args, Mapping):
        return str({key: eval_args.get(key) for key in ("split", "order", "group_by") if key in eval_args})
    return str(eval_args)


def sentence_transformers_available() -> bool:
    """Whether the ``sentence-transformers`` package is importable (checked without importing it)."""
    return importlib.util.find_spec("sentence_transformers") is not None


def _choice(key: str, value: Any, choices: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"`{key}` must be one of {', '.join(choices)}; got [{value}]")
    return value


def _int(key: str, value: Any, minimum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"`{key}` must be an integer; got [{value}]")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"`{key}` must be at least {minimum}; got [{value}]")
    return value


def _int_or_auto(key: str, value: Any, minimum: Optional[int] = None) -> Optional[int]:
    """An integer, or None for 'auto' (also an empty value)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, str):
        raise ConfigError(f"`{key}` must be an integer or 'auto'; got [{value}]")
    return _int(key, value, minimum)


def _float(key: str, value: Any, minimum: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"`{key}` must be a number; got [{value}]")
    value = float(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"`{key}` must be at least {minimum}; got [{value}]")
    return value


def _optional_float(key: str, value: Any) -> Optional[float]:
    return None if value is None else _float(key, value, minimum=0.0)


def _optional_str(key: str, value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"`{key}` must be a string; got [{value}]")
    return value


def _str_list(key: str, value: Any) -> Tuple[str, ...]:
    if isinstance(value, str):  # "title,brand", "[title, brand]" (RecBole leaves unparsable lists as text)
        value = [part.strip("'\" ") for part in value.strip("[] ").replace(",", " ").split()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"`{key}` must be a list of field names; got [{value}]")
    return tuple(value)
