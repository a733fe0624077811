"""Progress bars follow ``show_progress``, also those that transformers draws while it loads a model."""

from __future__ import annotations

import functools
from contextlib import contextmanager


@contextmanager
def quiet_transformers(quiet: bool):
    """Inside the block, transformers draws no progress bar (its GGUF reader included) when ``quiet``."""
    if not quiet:
        yield
        return
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        yield
        return
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        gguf_utils = None
    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original
        if was_enabled:
            transformers_logging.enable_progress_bar()
