"""``--stage=explain`` as text (console), Markdown and a self-contained HTML page."""

from __future__ import annotations

import html
from typing import List

from recbole_eimf.quick_start.explain import Explanation, NamedInterest, UserExplanation


def interest_label(interest: NamedInterest) -> str:
    """``Drama (0.81), Romance (0.62)``, or the one item-text name; notes a repeated interest."""
    label = ", ".join(name if cos is None else f"{name} ({cos:.2f})" for name, cos in interest.names)
    if interest.same_as is not None:
        label += f" [same as interest {interest.same_as + 1}]"
    return label


def history_line(user: UserExplanation) -> str:
    line = f"last {len(user.history)} of {user.n_history} items (oldest first)"
    if user.n_history < len(user.interests):
        line += f"; fewer items than the {len(user.interests)} interests, so some interests repeat"
    return line


def _header(explanation: Explanation) -> List[str]:
    lines = [f"checkpoint: {explanation.model_file} ({explanation.model} on {explanation.dataset})",
             f"interests named by: {explanation.naming}"]
    if explanation.note:
        lines.append(f"note: {explanation.note}")
    return lines


def _user_text(explanation: Explanation, user: UserExplanation) -> List[str]:
    title = explanation.title
    lines = ["", f"user {user.user}: {history_line(user)}"]
    lines += [f"  - {title(item)}" for item in user.history]
    for interest in user.interests:
        lines.append(f"interest {interest.index + 1}: {interest_label(interest)}")
        lines += [f"  {rank}. {title(item)}" for rank, item in enumerate(interest.items, 1)]
    lines.append(f"top {len(user.recommendations)} recommendations:")
    lines += [f"  {rank}. {title(item)}  <- interest {k + 1}" for rank, (item, k) in enumerate(user.recommendations, 1)]
    return lines


def explanation_text(explanation: Explanation) -> str:
    lines = _header(explanation)
    for user in explanation.users:
        lines += _user_text(explanation, user)
    return "\n".join(lines)


def _md(text: str) -> str:
    """Markdown-safe inline text (item titles may hold *, _ or |)."""
    return "".join("\\" + c if c in "\\`*_[]|<>#" else c for c in text)


def explanation_markdown(explanation: Explanation) -> str:
    title = explanation.title
    lines = [f"# Why these recommendations: {explanation.model} on {explanation.dataset}", ""]
    lines += [f"- {_md(line)}" for line in _header(explanation)]
    for user in explanation.users:
        lines += ["", f"## User {_md(user.user)}", "",
                  f"{_md(history_line(user)).capitalize()}: " + "; ".join(_md(title(i)) for i in user.history), ""]
        for interest in user.interests:
            lines += [f"### Interest {interest.index + 1}: {_md(interest_label(interest))}", ""]
            lines += [f"{rank}. {_md(title(item))}" for rank, item in enumerate(interest.items, 1)] + [""]
        lines += ["### Recommendations", "", "| # | item | interest |", "| ---: | --- | --- |"]
        names = {i.index: i.names[0][0] for i in user.interests}
        lines += [f"| {rank} | {_md(title(item))} | {k + 1}: {_md(names[k])} |"
                  for rank, (item, k) in enumerate(user.recommendations, 1)]
    return "\n".join(lines) + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-top:1px solid #ccc;padding-top:1rem}.interests{display:flex;flex-wrap:wrap;gap:1rem}
.interest{flex:1 1 16rem;border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
.history{color:#555}.note{color:#a60}"""


def explanation_html(explanation: Explanation) -> str:
    e, title = html.escape, explanation.title
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(explanation.model)} on "
             f"{e(explanation.dataset)}: why these recommendations</title><style>{_STYLE}</style></head><body>",
             f"<h1>Why these recommendations: {e(explanation.model)} on {e(explanation.dataset)}</h1>",
             "<ul>" + "".join(f"<li>{e(line)}</li>" for line in _header(explanation)) + "</ul>"]
    for user in explanation.users:
        parts.append(f"<h2>User {e(user.user)}</h2><p class='history'>{e(history_line(user)).capitalize()}: "
                     + "; ".join(e(title(i)) for i in user.history) + "</p>")
        parts.append("<div class='interests'>")
        for interest in user.interests:
            items = "".join(f"<li>{e(title(item))}</li>" for item in interest.items)
            parts.append(f"<div class='interest'><h3>Interest {interest.index + 1}</h3>"
                         f"<p>{e(interest_label(interest))}</p><ol>{items}</ol></div>")
        parts.append("</div><h3>Recommendations</h3><table><tr><th>#</th><th>item</th><th>interest</th></tr>")
        names = {i.index: i.names[0][0] for i in user.interests}
        parts += [f"<tr><td>{rank}</td><td>{e(title(item))}</td><td>{k + 1}: {e(names[k])}</td></tr>"
                  for rank, (item, k) in enumerate(user.recommendations, 1)]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
