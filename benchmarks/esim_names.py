"""How readable ESIM's extractive interest names are: counts of the defects of issue 33.

    python benchmarks/esim_names.py --dataset=ml-100k
    python benchmarks/esim_names.py --dataset=amazon-beauty

Runs ESIM with ``llm_backend: extractive`` (the default settings otherwise) into ``--cache_dir``
(its ``targets/`` is removed first, so the names are built again; the item embeddings are kept)
and counts, over the typical users' interests written to ``interests.json``:

* stray words: names holding a word that is in none of the labels (genres, categories) of the
  user's items, where those items have labels (title words glued to a label name);
* repeated words: names holding a word twice ("Tools & Tools");
* filler: descriptions saying "N of the user's last M items are like this";
* users whose interests share concepts: fewer distinct concepts than interests.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import recbole_eimf  # noqa: F401  (compat shims before RecBole)

_WORDS = re.compile(r"[a-z0-9']+")


def words(text: str) -> list:
    return _WORDS.findall(text.lower())


def count_defects(records: list, catalog) -> dict:
    """The defect counts (module doc) of ESIM's ``interests.json`` records."""
    counts = {"users": 0, "names": 0, "stray_words": 0, "repeated_words": 0, "filler": 0,
              "users_sharing_concepts": 0, "examples": []}
    for record in records:
        if not record["interests"]:
            continue
        counts["users"] += 1
        label_words = {w for item in record["item_ids"] for label in catalog.labels[item] for w in words(label)}
        for interest in record["interests"]:
            counts["names"] += 1
            name_words = words(interest["name"])
            stray = bool(label_words) and any(w not in label_words for w in name_words)
            repeated = len(set(name_words)) < len(name_words)
            counts["stray_words"] += stray
            counts["repeated_words"] += repeated
            counts["filler"] += "of the user's last" in (interest.get("description") or "")
            if (stray or repeated) and len(counts["examples"]) < 6:
                counts["examples"].append(interest["name"])
        counts["users_sharing_concepts"] += len(set(record["concepts"])) < len(record["interests"])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--cache_dir", default=None, help="ESIM cache root (default: saved/esim-names)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line

    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset
    from recbole_eimf.esim import EsimSettings, run_esim
    from recbole_eimf.esim.item_text import build_item_catalog

    config_dict = {"show_progress": False, "state": "WARNING"}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config(model="ComiRecSA", dataset=args.dataset, config_dict=config_dict)
    train = create_dataset(config).build()[0]
    cache = Path(args.cache_dir or "saved/esim-names")
    settings = EsimSettings.from_config(config, llm_backend="extractive", esim_cache_dir=str(cache))
    shutil.rmtree(settings.cache_dir / "targets", ignore_errors=True)
    result = run_esim(settings, train)
    records = json.loads((result.targets.directory / "interests.json").read_text(encoding="utf-8"))
    counts = count_defects(records, build_item_catalog(train, settings.text_fields))
    print(f"{args.dataset}: {counts['names']} names of {counts['users']} typical users; "
          f"{result.targets.n_concepts} concepts")
    print(f"  names with stray words:        {counts['stray_words']}")
    print(f"  names with a repeated word:    {counts['repeated_words']}")
    print(f"  filler descriptions:           {counts['filler']}")
    print(f"  users sharing concepts:        {counts['users_sharing_concepts']} of {counts['users']}")
    print(f"  examples of defects:           {counts['examples']}")


if __name__ == "__main__":
    main()
