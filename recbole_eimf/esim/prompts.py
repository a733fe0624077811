"""Prompts: a user's last training items, put into the template, cut to a token budget.

The template (``prompt_template``; default ``templates/interests.txt``) is a text file with an
optional ``[system]`` section and a ``[user]`` section, each starting on a line of its own; a file
without markers is one user message. Placeholders (``string.Template`` syntax; write ``$$`` for a
literal dollar):

* ``$items`` (required): the items, one line each, oldest first: ``1. title | field | ...``;
* ``$max_interests``: the most interests to state (``max_interests``);
* ``$n_items``: how many items the prompt shows.

Item text is data: it is put on one line, stripped of control characters and of the
``<items>``/``</items>`` markers, and cut to 300 characters. The prompt shows the user's last
``max_prompt_items`` training items; while the whole prompt has more than ``prompt_token_budget``
tokens (tiktoken), the oldest item is dropped (and a single remaining item is cut).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.item_text import ItemCatalog, clean_text
from recbole_eimf.esim.tokens import TokenCounter

MESSAGE_OVERHEAD_TOKENS = 4        # chat formatting per message, as OpenAI counts it
_SECTION = re.compile(r"^\[(system|user)\]\s*$", re.M)
_MARKERS = re.compile(r"</?\s*items\s*>", re.I)

REPAIR_INSTRUCTION = (
    "\n\nYour previous answer to this request could not be read as the JSON asked for. "
    "Answer again with the JSON object only, no other text, in exactly this form:\n"
    '{"interests": [{"name": "...", "description": "..."}]}'
)


@dataclass(frozen=True)
class Prompt:
    """What one user's request holds: chat messages and the items they show."""

    uid: int
    messages: Tuple[Tuple[str, str], ...]     # (role, content), in order
    item_ids: Tuple[int, ...]                  # items shown, oldest first
    n_tokens: int

    def as_messages(self) -> List[Dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def repair(self) -> "Prompt":
        """The same request with a note asking for JSON only (the single repair retry)."""
        messages = list(self.messages)
        role, content = messages[-1]
        messages[-1] = (role, content + REPAIR_INSTRUCTION)
        return Prompt(self.uid, tuple(messages), self.item_ids, self.n_tokens)


def prompt_key(messages: Sequence[Dict[str, str]], model: str, decoding: Dict) -> str:
    """sha256 identifying one request: its messages, the model and the decoding settings."""
    payload = json.dumps(
        {"messages": [[m["role"], m["content"]] for m in messages], "model": model, "decoding": decoding},
        ensure_ascii=False, sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class PromptTemplate:
    """A prompt template file (see module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.text = self.path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"`prompt_template` [{path}] cannot be read: {err}") from err
        self.sha256 = hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        self.sections = self._split(self.text)
        if "items" not in self._placeholders():
            raise ConfigError(f"`prompt_template` [{path}] has no $items placeholder for the user's items")
        unknown = self._placeholders() - {"items", "max_interests", "n_items"}
        if unknown:
            raise ConfigError(
                f"`prompt_template` [{path}] uses unknown placeholders {sorted(unknown)}; "
                "known: $items, $max_interests, $n_items (write $$ for a literal $)"
            )

    def _split(self, text: str) -> List[Tuple[str, string.Template]]:
        marks = list(_SECTION.finditer(text))
        if not marks:
            return [("user", string.Template(text.strip()))]
        if text[: marks[0].start()].strip():
            raise ConfigError(
                f"`prompt_template` [{self.path}] has text before its first [system]/[user] marker"
            )
        sections = []
        for mark, following in zip(marks, marks[1:] + [None]):
            body = text[mark.end(): following.start() if following else len(text)].strip()
            sections.append((mark.group(1), string.Template(body)))
        if sections[-1][0] != "user":
            raise ConfigError(f"`prompt_template` [{self.path}] must end with a [user] section")
        return sections

    def _placeholders(self) -> set:
        names = set()
        for _, template in self.sections:
            for match in template.pattern.finditer(template.template):
                name = match.group("named") or match.group("braced")
                if name:
                    names.add(name)
                elif match.group("invalid") is not None:
                    raise ConfigError(
                        f"`prompt_template` [{self.path}] has a stray $ (write $$ for a literal dollar)"
                    )
        return names

    def render(self, items: str, max_interests: int, n_items: int) -> Tuple[Tuple[str, str], ...]:
        values = {"items": items, "max_interests": max_interests, "n_items": n_items}
        return tuple((role, template.substitute(values)) for role, template in self.sections)


class PromptBuilder:
    """Builds each user's prompt from their training sequence (see module doc)."""

    def __init__(
        self,
        template: PromptTemplate,
        catalog: ItemCatalog,
        counter: TokenCounter,
        max_items: int,
        token_budget: int,
        max_interests: int,
    ) -> None:
        self.template = template
        self.catalog = catalog
        self.counter = counter
        self.max_items = max_items
        self.budget = token_budget
        self.max_interests = max_interests
        overhead = self._count(self.template.render("", max_interests, 0))
        if overhead >= token_budget:
            raise ConfigError(
                f"`prompt_token_budget` [{token_budget}] leaves no room for items: the template "
                f"[{template.path}] alone has {overhead} tokens"
            )

    def item_line(self, position: int, item: int) -> str:
        text = _MARKERS.sub(" ", self.catalog.text(item))
        return f"{position}. {clean_text(text) or self.catalog.title(item)}"

    def _count(self, messages: Tuple[Tuple[str, str], ...]) -> int:
        return sum(self.counter.count(content) + MESSAGE_OVERHEAD_TOKENS for _, content in messages)

    def _render(self, items: Sequence[int], last_text: Optional[str] = None):
        lines = [self.item_line(k + 1, item) for k, item in enumerate(items)]
        if last_text is not None:
            lines[-1] = last_text
        messages = self.template.render("\n".join(lines), self.max_interests, len(items))
        return messages, self._count(messages)

    def build(self, uid: int, sequence: Sequence[int]) -> Prompt:
        items = [int(i) for i in sequence[-self.max_items:]]
        if not items:
            raise ValueError(f"user {uid} has no training items to put into a prompt")
        messages, n_tokens = self._render(items)
        while n_tokens > self.budget and len(items) > 1:
            items = items[1:]  # the oldest item goes first
            messages, n_tokens = self._render(items)
        if n_tokens > self.budget:  # one item longer than the budget: cut its text
            line = self.item_line(1, items[0])
            keep = max(1, self.counter.count(line) - (n_tokens - self.budget) - 2)
            messages, n_tokens = self._render(items, self.counter.truncate(line, keep))
        return Prompt(uid=uid, messages=messages, item_ids=tuple(items), n_tokens=n_tokens)
