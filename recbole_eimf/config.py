"""RecBole ``Config`` that knows the plugin's models and defaults.

Load order (later wins), identical to RecBole's own for everything RecBole loads:

1. RecBole internals: ``overall.yaml``, the RecBole model yaml, its dataset yaml, quick-start yaml;
2. the plugin's internals, all under ``recbole_eimf/properties/``: ``overall.yaml`` (this
   project's evaluation protocol), ``<stage>.yaml`` for each pipeline stage the model class
   declares in ``PIPELINE_STAGES`` (``esim.yaml`` for EIMF; other models carry no ESIM keys),
   the yaml of the model's ``backbone`` if it wraps one (EIMF), the plugin model's yaml
   (``model/<Model>.yaml``, after those of the plugin base classes it extends, e.g.
   ``model/MultiInterestRecommender.yaml``), ``dataset/<dataset>.yaml``; then the **tuned
   defaults** of the model on that dataset:
   ``props/tuned/<dataset>/<Model>.yaml`` (any model, RecBole's included), or for a model that
   wraps a backbone (EIMF) the backbone's ``<Backbone>.yaml`` then ``EIMF-<Backbone>.yaml``.
   These are written by the tuner (``--params_file=... --tuned_dir=props/tuned``), next to the
   search space and the trials that chose them; the files loaded are listed in the config as
   ``plugin_defaults_files`` (all but the tuned ones) and ``tuned_defaults_files``.
   ``tuned_defaults: False`` leaves them out (the models' own defaults), ``tuned_defaults:
   backbone`` keeps the backbone's only (what the tuner runs a wrapper's search with);
3. user config files, then ``config_dict``, then ``--key=value`` on the command line.

So ``model: ComiRecSA`` and ``model: SASRec`` both resolve, and anything a user writes overrides
the plugin's defaults.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

import recbole_eimf  # noqa: F401  (applies the compatibility shims before RecBole loads)
from recbole.config import Config as RecBoleConfig

from recbole_eimf import distributed
from recbole_eimf.config_keys import check_config_keys
from recbole_eimf.errors import ConfigError
from recbole_eimf.secrets import check_config as check_config_secrets
from recbole_eimf.utils import get_model, model_properties_dir, properties_dir, tuned_dir, tuned_name


# Keys that say where or how visibly a run happens, not what it computes: a rerun of a benchmark or
# a search may change them (e.g. another GPU or data folder) and still reuse its finished runs.
PLACEMENT_KEYS = {
    "gpu_id", "use_gpu", "data_path", "show_progress", "state", "worker", "nproc", "world_size",
    "ip", "port", "offset", "log_wandb", "wandb_project", "save_dataset", "save_dataloaders",
    "dataset_save_path", "dataloaders_save_path", "eval_batch_size", "esim_cache_dir", "strict_config",
    "threads",  # recorded with each run's environment instead (the processor and thread count it ran on)
}


def command_line_value(value: Any) -> Any:
    """A ``--key=value`` value as a Python literal where it reads as one (``1``, ``0.5``,
    ``[1, 2]``, ``True``; also ``true``/``false``), else the string itself. Non-strings pass."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return {"true": True, "false": False}.get(value.lower(), value)


class Config(RecBoleConfig):
    """RecBole's ``Config`` with the plugin's model lookup and yaml defaults."""

    def __init__(
        self,
        model: Union[str, type, None] = None,
        dataset: Optional[str] = None,
        config_file_list: Optional[Sequence[str]] = None,
        config_dict: Optional[dict] = None,
    ) -> None:
        super().__init__(
            model=model,
            dataset=dataset,
            config_file_list=list(config_file_list) if config_file_list else None,
            config_dict=config_dict,
        )
        check_config_secrets(self.final_config_dict)  # before anything logs or records the config
        check_config_keys(self, config_file_list)  # a misspelt key warns (strict_config: refused)

    def _init_device(self) -> None:  # gloo on CPUs, nccl on GPUs (recbole_eimf.distributed)
        distributed.init_device(self.final_config_dict, super()._init_device)

    def compatibility_settings(self) -> None:  # numpy aliases are handled by recbole_eimf.compat
        pass

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            try:
                model = self.external_config_dict["model"]
            except KeyError:
                raise KeyError(
                    "`model` must be given: as an argument, in a config file, in config_dict "
                    "or on the command line (--model=ComiRecSA)"
                ) from None
        if isinstance(model, str):
            final_model, final_model_class = model, get_model(model)
        else:
            final_model, final_model_class = model.__name__, model

        if dataset is None:
            try:
                dataset = self.external_config_dict["dataset"]
            except KeyError:
                raise KeyError(
                    "`dataset` must be given: as an argument, in a config file, in config_dict "
                    "or on the command line (--dataset=ml-100k)"
                ) from None
        return final_model, final_model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        # Progress bars by default only where a person watches (RecBole's default is always on).
        self.internal_config_dict["show_progress"] = sys.stderr.isatty()
        dataset_file = properties_dir() / "dataset" / f"{dataset}.yaml"
        backbone = self._backbone(model_properties_dir() / f"{model}.yaml")
        tuned = [tuned_dir() / dataset / f"{name}.yaml" for name in self._tuned_names(model, backbone) if name]
        tuned = [path for path in tuned if path.is_file()]
        stages = [properties_dir() / f"{stage}.yaml" for stage in getattr(model_class, "PIPELINE_STAGES", ())]
        candidates = (
            properties_dir() / "overall.yaml",
            *stages,
            *(self._class_files(self._backbone_class(backbone)) if backbone else ()),
            *self._class_files(model_class),
            dataset_file,
        )
        defaults = [path for path in candidates if path is not None and path.is_file()]
        for path in (*defaults, *tuned):
            loaded = self._update_internal_config_dict(str(path)) or {}
            if path == dataset_file:
                self.parameters["Dataset"] += [key for key in loaded if key not in self.parameters["Dataset"]]
        # Which defaults applied is part of a run's settings (the benchmark's resume check hashes
        # them): logged with the config.
        self.internal_config_dict["plugin_defaults_files"] = [str(path) for path in defaults]
        self.internal_config_dict["tuned_defaults_files"] = [str(path) for path in tuned]

    @staticmethod
    def _backbone_class(backbone: str) -> type:
        try:
            return get_model(backbone)
        except ConfigError:
            raise ConfigError(f"`backbone` [{backbone}] is not a model of the plugin or of RecBole") from None

    @staticmethod
    def _class_files(model_class: type) -> list:
        """The yaml of a model class and of each plugin base class it extends, base first
        (``MultiInterestRecommender.yaml`` holds what every backbone shares)."""
        names = [cls.__name__ for cls in reversed(model_class.__mro__)]
        return [model_properties_dir() / f"{name}.yaml" for name in names]

    def _tuned_names(self, model: str, backbone: Optional[str]) -> tuple:
        """Whose tuned defaults load, by ``tuned_defaults``: ``True`` (the default) the backbone's
        and the model's, ``'backbone'`` the backbone's only (a search for the model's own, which
        must not start from an earlier search's winner), ``False`` none (the models' own defaults)."""
        choice = self.external_config_dict.get("tuned_defaults", True)
        if choice is True:
            return (backbone, tuned_name(model, backbone))
        if choice == "backbone":
            return (backbone,)
        if choice is False:
            return ()
        raise ConfigError(f"`tuned_defaults` must be True, False or 'backbone', not {choice!r}")

    def _backbone(self, model_file: Path) -> Optional[str]:
        """The backbone a wrapper model names (``backbone:`` from the user or its yaml), else None."""
        backbone = self.external_config_dict.get("backbone")
        if backbone is None and model_file.is_file():
            with open(model_file, encoding="utf-8") as f:
                backbone = (yaml.load(f.read(), Loader=self.yaml_loader) or {}).get("backbone")
        return backbone if isinstance(backbone, str) else None
