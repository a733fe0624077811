"""Unknown config keys: a warning naming the closest known key, or an error under ``strict_config``.

RecBole accepts any key, so ``--n_interest=8`` trains with ``n_interests: 4`` and says nothing.
The keys a user gives (config files, ``config_dict``, ``--key=value``) are checked against every
key RecBole or the plugin can read:

* the keys of RecBole's own yaml files and its ``parameters`` lists (``recbole.utils.argument_list``);
* the keys of every yaml the plugin ships (``recbole_eimf/properties``, ``props/``: defaults,
  dataset props, benchmark variants, tuned defaults) and the parameters of its ``.hyper`` spaces;
* every literal ``config["key"]`` (or ``config_dict.get("key")``) in RecBole's and the plugin's source: models, samplers and
  trainers read keys that no yaml sets (``hidden_size``, ``n_layers``, ...);
* the fields of the dataset's atomic files, which some RecBole keys are named after;
* the flags of ``run_recbole_eimf.py``, which RecBole's Config reads from the command line too.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional

import yaml

import recbole
from recbole.utils import argument_list

from recbole_eimf.errors import ConfigError
from recbole_eimf.utils import props_dir

PACKAGE_DIR = Path(__file__).resolve().parent
PLUGIN_KEYS = frozenset({"strict_config"})  # read here, through config["strict_config"] below
_CONFIG_READ = re.compile(r"""config(?:_dict)?(?:\[|\.get\()\s*["'](\w+)["']""")  # config["k"], config_dict.get("k"
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:", re.M)  # a yaml mapping's keys, without parsing it
_warned: set = set()
logger = logging.getLogger(__name__)


def _yaml_keys(path: Path) -> Iterable[str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return ()
    return data.keys() if isinstance(data, dict) else ()


def _hyper_keys(path: Path) -> Iterable[str]:
    """Parameter names of a RecBole ``.hyper`` search space (``name choice [...]`` lines)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


@functools.lru_cache(maxsize=1)
def known_keys() -> FrozenSet[str]:
    """Every key RecBole or the plugin reads or ships (see the module's docstring); cached."""
    from recbole_eimf.quick_start.cli import build_parser  # here: cli imports the Config

    keys = set(PLUGIN_KEYS)
    keys.update(action.dest for action in build_parser()._actions if action.option_strings)
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys.update(getattr(argument_list, name))
    recbole_dir = Path(recbole.__file__).resolve().parent
    for folder in (recbole_dir / "properties", PACKAGE_DIR / "properties", props_dir()):
        for path in folder.rglob("*.yaml"):
            keys.update(_TOP_LEVEL_KEY.findall(path.read_text(encoding="utf-8", errors="replace")))
        for path in folder.rglob("*.hyper"):
            keys.update(_hyper_keys(path))
    for folder in (recbole_dir, PACKAGE_DIR):
        for path in folder.rglob("*.py"):
            keys.update(_CONFIG_READ.findall(path.read_text(encoding="utf-8", errors="replace")))
    from recbole_eimf.model.abstract_recommender import CONFIG_FALLBACKS  # read through config_option

    keys.update(CONFIG_FALLBACKS)
    return frozenset(keys)


def _dataset_fields(config) -> List[str]:
    """The field names in the headers of the dataset's atomic files (none if they are not there)."""
    folder = Path(config["data_path"] or "")
    fields = []
    for path in folder.glob(f"{config['dataset']}*.*") if folder.is_dir() else ():
        with open(path, encoding="utf-8", errors="replace") as f:
            fields += [entry.split(":")[0] for entry in f.readline().rstrip("\r\n").split(config["field_separator"] or "\t")]
    return fields


def suggestion(key: str, known: Iterable[str]) -> Optional[str]:
    """The known key closest to ``key`` (difflib), or None if none is close."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return close[0] if close else None


def given_keys(config, config_files: Optional[Iterable[str]]) -> Dict[str, str]:
    """Each key the user gave, with where: a config file's path, ``config_dict`` or the command line."""
    given: Dict[str, str] = {}
    for path in config_files or ():
        given.update({str(key): str(path) for key in _yaml_keys(Path(path))})
    given.update({str(key): "config_dict" for key in config.variable_config_dict})
    given.update({str(key): "the command line" for key in config.cmd_config_dict})
    return given


def check_config_keys(config, config_files: Optional[Iterable[str]] = None) -> List[str]:
    """Warn about (or, under ``strict_config: True``, refuse) each given key no one reads; return them."""
    given = given_keys(config, config_files)
    unknown = [key for key in given if key not in known_keys()]
    if unknown:
        fields = set(_dataset_fields(config))
        unknown = [key for key in unknown if key not in fields]
    for key in unknown:
        close = suggestion(key, known_keys())
        message = (f"unknown config key `{key}` (in {given[key]}): "
                   + (f"did you mean `{close}`?" if close else "no key of RecBole or recbole-eimf is named so"))
        if config["strict_config"] is True:
            raise ConfigError(message + " (strict_config: True refuses unknown keys)")
        if (key, given[key]) not in _warned:
            _warned.add((key, given[key]))
            logger.warning(message + " It is ignored; strict_config: True would refuse it.")
    return unknown
