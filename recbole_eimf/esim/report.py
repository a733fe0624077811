"""What ESIM tells people: the readable interests file, the run summary, the dry-run estimate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from recbole_eimf.esim.extraction import ExtractionStats, UserAnswer
from recbole_eimf.esim.item_text import ItemCatalog

RAW_ANSWER_CHARS = 600


def _source_line(identity: Dict) -> str:
    if not identity["uses_llm"]:
        return "no LLM was used: interests were extracted from the item text (llm_backend extractive)"
    return f"LLM backend {identity['backend']}, model {identity['model']}, decoding {identity['decoding']}"


def interests_markdown(
    dataset: str,
    answers: Dict[int, UserAnswer],
    cluster_of: Dict[int, int],
    user_tokens: List[str],
    concepts_of: Dict[int, List[int]],
    catalog: ItemCatalog,
    identity: Dict,
    encoder_key: str,
    stats: ExtractionStats,
    n_users: int,
    concept_names: Sequence[str] = (),
) -> str:
    """Each typical user's stated interests next to the items they came from (Markdown)."""
    n_typical = len(answers)
    share = n_typical / max(1, n_users)
    lines = [
        f"# ESIM interests: {dataset}",
        "",
        f"- Source: {_source_line(identity)}",
        f"- Text encoder: {encoder_key}",
        f"- Typical users: {n_typical} of {n_users} users with training data ({share:.2%})",
        f"- Outcome: {stats.ok} ok ({stats.repaired} after a repair request), "
        f"{stats.failed_requests} failed requests, {stats.failed_parse} unreadable answers",
        "- Items are each user's training items only, oldest first, as the prompt showed them.",
        "",
    ]
    by_cluster: Dict[int, List[int]] = {}
    for uid in answers:
        by_cluster.setdefault(cluster_of.get(uid, -1), []).append(uid)
    for cluster in sorted(by_cluster):
        lines += [f"## Cluster {cluster}", ""]
        for uid in by_cluster[cluster]:
            answer = answers[uid]
            items = answer.prompt.item_ids
            lines += [f"### User {user_tokens[uid]} (internal id {uid}): {answer.status}", ""]
            lines += ["Items:", ""]
            lines += [f"{k}. {catalog.text(item) or catalog.title(item)}" for k, item in enumerate(items, 1)]
            lines += ["", "Interests:", ""]
            if answer.interests:
                concepts = concepts_of.get(uid, [])
                for j, interest in enumerate(answer.interests):
                    concept = ""
                    if j < len(concepts):
                        named = f": {concept_names[concepts[j]]}" if concepts[j] < len(concept_names) else ""
                        concept = f" (concept {concepts[j]}{named})"
                    text = f"**{interest.name}**" + (f": {interest.description}" if interest.description else "")
                    lines.append(f"- {text}{concept}")
            else:
                lines.append(f"- none: {answer.error}")
                for raw in answer.raw_answers:
                    shown = raw if len(raw) <= RAW_ANSWER_CHARS else raw[:RAW_ANSWER_CHARS] + "…"
                    lines += ["", "  Raw answer:", "", "  ```", *("  " + r for r in (shown or "(empty)").splitlines()), "  ```"]
            lines.append("")
    return "\n".join(lines)


def interests_records(
    answers: Dict[int, UserAnswer], cluster_of: Dict[int, int], user_tokens: List[str],
    concepts_of: Dict[int, List[int]],
) -> List[dict]:
    """The same content as the Markdown file, as JSON records."""
    records = []
    for uid in sorted(answers):
        answer = answers[uid]
        records.append({
            "user": user_tokens[uid],
            "uid": uid,
            "cluster": cluster_of.get(uid, -1),
            "item_ids": list(answer.prompt.item_ids),
            "prompt_tokens": answer.prompt.n_tokens,
            "status": answer.status,
            "method": answer.method,
            "error": answer.error,
            "interests": [{"name": i.name, "description": i.description} for i in answer.interests],
            "concepts": concepts_of.get(uid, []),
            "raw_answers": answer.raw_answers if not answer.ok else [],
        })
    return records


@dataclass
class DryRunReport:
    """What a real run would send, and what it would cost; made without any request."""

    dataset: str
    identity: Dict
    n_users: int
    n_typical: int
    n_clusters: int
    n_cached: int
    n_to_send: int
    prompt_tokens_to_send: int
    tokenizer: str
    max_output_tokens: int
    price_in: Optional[float]
    price_out: Optional[float]
    encoder_note: str = ""

    def cost(self):
        """``(input cost, output cost upper bound)``, None where the price is not configured."""
        cost_in = None if self.price_in is None else self.prompt_tokens_to_send / 1000.0 * self.price_in
        out_tokens = self.n_to_send * self.max_output_tokens
        cost_out = None if self.price_out is None else out_tokens / 1000.0 * self.price_out
        return cost_in, cost_out

    def format(self) -> str:
        share = self.n_typical / max(1, self.n_users)
        cost_in, cost_out = self.cost()
        if not self.identity["uses_llm"]:
            cost = "nothing: llm_backend extractive uses no LLM"
        elif cost_in is None or cost_out is None:
            cost = ("unknown: set llm_price_per_1k_input_tokens and llm_price_per_1k_output_tokens "
                    "to your model's prices")
        else:
            cost = f"{cost_in + cost_out:.4f} at most ({cost_in:.4f} input + at most {cost_out:.4f} output)"
        lines = [
            f"ESIM dry run on {self.dataset}: no request was made.",
            f"  source:               {_source_line(self.identity)}",
            f"  typical users:        {self.n_typical} of {self.n_users} users ({share:.2%}) in {self.n_clusters} clusters",
            f"  answers in the cache: {self.n_cached}",
            f"  users to send:        {self.n_to_send}",
            f"  prompt tokens:        {self.prompt_tokens_to_send:,} to send (tokenizer {self.tokenizer})",
            f"  answer tokens:        at most {self.n_to_send * self.max_output_tokens:,} "
            f"(llm_max_tokens {self.max_output_tokens} per answer)",
            f"  estimated cost:       {cost}",
            "  (an unreadable answer costs one more repair request)",
        ]
        if self.encoder_note:
            lines.append(f"  note:                 {self.encoder_note}")
        return "\n".join(lines)


def summary_text(
    dataset: str, identity: Dict, stats: ExtractionStats, n_users: int, n_typical: int,
    n_with_target: int, n_concepts: int, folder, from_cache: bool,
) -> str:
    """A few lines for the end of ``--stage=esim``."""
    if from_cache:
        head = f"ESIM on {dataset}: semantic targets loaded from the cache (no request made)."
    else:
        head = f"ESIM on {dataset}: semantic targets built."
    lines = [
        head,
        f"  source:          {_source_line(identity)}",
        f"  typical users:   {n_typical} of {n_users} users ({n_typical / max(1, n_users):.2%})",
    ]
    if not from_cache and not identity["uses_llm"]:
        lines.append(f"  outcome:         {stats.ok} users with interests, {stats.failed_parse} without")
    elif not from_cache:
        lines += [
            f"  requests:        {stats.calls} answered ({stats.repair_calls} repairs, {stats.retries} retries), "
            f"{stats.cache_hits} answers from the cache",
            f"  outcome:         {stats.ok} ok ({stats.repaired} after a repair), {stats.failed_requests} failed "
            f"requests, {stats.failed_parse} unreadable answers",
            f"  tokens:          {stats.input_tokens:,} in, {stats.output_tokens:,} out",
        ]
    lines += [
        f"  users with targets: {n_with_target}; concepts: {n_concepts}",
        f"  written to:      {folder}",
    ]
    if (Path(folder) / "interests.md").is_file():  # not in a cache carried without it (benchmarks/gpu)
        lines.append(f"  readable file:   {Path(folder) / 'interests.md'}")
    return "\n".join(lines)
