"""Pipeline stages: what a model class trains on besides the interactions, prepared before the
model is built and handed to it.

The data flow is one way: dataset -> stages -> model -> trainer -> results. A model class lists
the stages it needs in ``PIPELINE_STAGES`` (EIMF: ``("esim",)``); :func:`prepare_stages` runs
each (or loads its cached output) and returns keyword arguments for the model's constructor. A
model never runs a stage itself, and no code here knows a model by name.

``esim``: ESIM's semantic targets (:mod:`recbole_eimf.esim`), as ``semantic_targets``.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Optional, Tuple

from recbole.utils import init_seed

from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset
from recbole_eimf.errors import ConfigError


class EsimStage:
    """ESIM: typical users -> LLM-stated interests -> semantic targets, cached (an LLM is paid once)."""

    name = "esim"

    def settings(self, config) -> Dict[str, Any]:
        """What decides the stage's output (equal settings: one build serves both runs)."""
        from recbole_eimf.esim import EsimSettings

        return EsimSettings.from_config(config).config_record()

    def prepare(self, config, train_dataset, log: logging.Logger) -> Dict[str, Any]:
        from recbole_eimf.esim import EsimSettings, run_esim

        result = run_esim(EsimSettings.from_config(config), train_dataset)
        log.info(f"ESIM: {result.summary}")
        return {"semantic_targets": result.targets}


STAGES = {stage.name: stage for stage in (EsimStage(),)}


def declared_stages(config) -> Tuple[str, ...]:
    """The stages a run of the config's model needs, checked: its class's ``stages_for(config)``
    where it has one (EIMF with both loss weights 0 needs none), else ``PIPELINE_STAGES``."""
    model_class = config.model_class
    stages_for = getattr(model_class, "stages_for", None)
    names = tuple(stages_for(config) if stages_for else getattr(model_class, "PIPELINE_STAGES", ()))
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ConfigError(f"{config['model']}.PIPELINE_STAGES names unknown stages {unknown}; known: {sorted(STAGES)}")
    return names


def prepare_stages(config, train_dataset, log: Optional[logging.Logger] = None) -> Dict[str, Any]:
    """Run (or load from their caches) the model's stages on the training split; their outputs,
    as keyword arguments of the model's constructor. The model class's ``check_config`` (where it
    has one) runs first: a bad key costs no stage."""
    check = getattr(config.model_class, "check_config", None)
    if check is not None:
        check(config)
    outputs: Dict[str, Any] = {}
    for name in declared_stages(config):
        outputs.update(STAGES[name].prepare(config, train_dataset, log or logging.getLogger(__name__)))
    return outputs


def stage_provenance(outputs: Dict[str, Any]) -> Dict[str, Any]:
    """What each stage output says produced it (its ``provenance()``), for run records."""
    return {name: out.provenance() for name, out in outputs.items() if hasattr(out, "provenance")}


def build_stage_caches(configs: Iterable[Tuple[str, Config]], log: logging.Logger) -> None:
    """Build (or find) every stage's cache once per distinct setting among ``configs`` (pairs of
    what a run is, e.g. a benchmark label or a trial's parameters, and its Config), in this
    process, before parallel trainings start: runs that start together then neither race on a
    cache nor pay an LLM twice."""
    seen = []
    for what, config in configs:
        for name in declared_stages(config):
            key = (name, STAGES[name].settings(config))
            if key in seen:
                continue
            seen.append(key)
            init_seed(config["seed"], config["reproducibility"])
            train_dataset = create_dataset(config).build()[0]
            log.info(f"{name} for {what}:")
            STAGES[name].prepare(config, train_dataset, log)

