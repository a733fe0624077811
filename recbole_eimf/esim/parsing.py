"""Reading interests out of an LLM's answer: strict JSON first, then tolerant recovery.

Tried in order, the first that yields at least one interest wins:

1. ``json``: the whole answer is JSON;
2. ``fenced``: JSON inside a Markdown code fence;
3. ``embedded``: the first JSON object or array inside prose (also with trailing commas, or in
   Python-literal quoting);
4. ``list``: a numbered or bulleted list, ``1. Name: description`` / ``- Name - description``.

Accepted JSON shapes: ``{"interests": [...]}`` (or any single key holding the list), a bare list,
or ``{"Name": "description", ...}``. An interest is an object with a name (``name``, ``interest``,
``title``, ``label`` or ``topic``) and optionally a description (``description``, ``desc``,
``reason``, ``explanation``, ``details``), or a string ``"Name: description"``. Names are cleaned
(quotes, Markdown emphasis, whitespace), deduplicated case-insensitively and cut to
``max_interests``. Nothing is invented: an answer with no readable interest fails, with the reason.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional

MAX_NAME_CHARS = 80
MAX_DESCRIPTION_CHARS = 300
NAME_KEYS = ("name", "interest", "title", "label", "topic")
DESCRIPTION_KEYS = ("description", "desc", "reason", "explanation", "details", "why")

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_LIST_LINE = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+(.+?)\s*$")
_NAME_SPLIT = re.compile(r"\s*(?::|\s[-–—]\s)\s*")
_EMPHASIS = re.compile(r"[*_`#]+")


@dataclass(frozen=True)
class Interest:
    name: str
    description: str = ""

    def text(self) -> str:
        """What the text encoder reads: ``name: description``."""
        return f"{self.name}: {self.description}" if self.description else self.name


@dataclass
class ParseResult:
    interests: List[Interest] = field(default_factory=list)
    method: Optional[str] = None      # json, fenced, embedded, list; None when it failed
    error: Optional[str] = None
    dropped: int = 0                  # interests past max_interests (or duplicates)

    @property
    def ok(self) -> bool:
        return bool(self.interests)


def parse_interests(answer: Optional[str], max_interests: int) -> ParseResult:
    """The interests stated in ``answer`` (see module doc)."""
    text = (answer or "").strip()
    if not text:
        return ParseResult(error="empty answer")
    attempts = [("json", lambda: _from_json_text(text))]
    attempts.append(("fenced", lambda: _first(_from_json_text(m) for m in _FENCE.findall(text))))
    attempts.append(("embedded", lambda: _embedded(text)))
    attempts.append(("list", lambda: _from_list_lines(text)))
    for method, attempt in attempts:
        raw = attempt()
        if raw:
            interests, dropped = _clean(raw, max_interests)
            if interests:
                return ParseResult(interests=interests, method=method, dropped=dropped)
    return ParseResult(error="no interests found in the answer (neither JSON nor a list)")


def _first(results) -> Optional[List[Interest]]:
    for result in results:
        if result:
            return result
    return None


def _loads(text: str) -> Any:
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            pass
    try:  # {'interests': [...]} written as a Python literal
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _from_json_text(text: str) -> Optional[List[Interest]]:
    return _from_value(_loads(text.strip()))


def _embedded(text: str) -> Optional[List[Interest]]:
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            end = _matching_close(text, start)
            value = _loads(text[start:end]) if end else None
        found = _from_value(value)
        if found:
            return found
    return None


def _matching_close(text: str, start: int) -> Optional[int]:
    """End (exclusive) of the bracketed span opening at ``start``, ignoring brackets in strings."""
    depth, quote, escaped = 0, None, False
    for pos in range(start, len(text)):
        char = text[pos]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return pos + 1
    return None


def _from_value(value: Any) -> Optional[List[Interest]]:
    if isinstance(value, dict):
        for key in ("interests", "Interests", "user_interests", "items", "results"):
            if isinstance(value.get(key), list):
                return _from_list(value[key])
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return _from_list(lists[0])
        if any(k.lower() in NAME_KEYS for k in value if isinstance(k, str)):
            return _from_list([value])
        if value and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return [Interest(k, v) for k, v in value.items()]
        return None
    if isinstance(value, list):
        return _from_list(value)
    return None


def _from_list(values: list) -> List[Interest]:
    interests = []
    for value in values:
        if isinstance(value, dict):
            lowered = {str(k).lower(): v for k, v in value.items()}
            name = next((lowered[k] for k in NAME_KEYS if isinstance(lowered.get(k), str)), None)
            description = next((lowered[k] for k in DESCRIPTION_KEYS if isinstance(lowered.get(k), str)), "")
            if name:
                interests.append(Interest(name, description))
        elif isinstance(value, str):
            interests.append(_split_name(value))
    return interests


def _from_list_lines(text: str) -> Optional[List[Interest]]:
    interests = []
    for line in text.splitlines():
        match = _LIST_LINE.match(line)
        if match:
            interests.append(_split_name(match.group(1)))
    return interests or None


def _split_name(text: str) -> Interest:
    parts = _NAME_SPLIT.split(text.strip(), maxsplit=1)
    name = parts[0]
    description = parts[1] if len(parts) > 1 else ""
    if len(name) > MAX_NAME_CHARS and not description:  # a sentence, not a name
        return Interest("", "")
    return Interest(name, description)


def _tidy(text: str, limit: int) -> str:
    text = _EMPHASIS.sub("", str(text))
    text = re.sub(r"\s+", " ", text).strip().strip("\"'“”‘’").strip()
    text = text.rstrip(" .,;:-–—").strip() if limit == MAX_NAME_CHARS else text
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _clean(raw: List[Interest], max_interests: int):
    interests, seen, dropped = [], set(), 0
    for interest in raw:
        name = _tidy(interest.name, MAX_NAME_CHARS)
        description = _tidy(interest.description, MAX_DESCRIPTION_CHARS)
        if not name or not any(c.isalnum() for c in name) or name.lower() in ("...", "name"):
            continue
        if name.lower() in seen or len(interests) >= max_interests:
            dropped += 1
            continue
        seen.add(name.lower())
        interests.append(Interest(name, "" if description in ("...", "…") else description))
    return interests, dropped
