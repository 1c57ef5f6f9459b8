"""Build-time translation of the docstrings' reStructuredText markup into the Markdown that mkdocstrings renders.

The sources keep their RST (``:math:`x```, ``.. math::`` blocks, ``:func:`name``` roles, ``>>>`` examples); this
module rewrites the text when the docs are built, never the sources:

* ``:math:`x``` becomes arithmatex inline math ``$x$`` and a ``.. math::`` directive (one line or an indented block)
  becomes a ``$$ ... $$`` display block, which MathJax renders;
* cross-reference roles (``:func:``, ``:class:``, ``:mod:``, ``:meth:``, ``:data:``, ``:attr:``, ``:exc:``)
  become code spans (``~a.b`` shows ``b``, as in Sphinx);
* a run of ``>>>`` lines outside a fenced block becomes a ``pycon`` code block;
* a module constant documented by ``#:`` comment lines (Sphinx's convention) gets them as its docstring.

:class:`RstToMarkdown` applies :func:`rst_to_markdown` to every docstring griffe loads (it is listed under the
mkdocstrings handler's ``extensions`` in ``mkdocs.yml``); the build hook applies it to module docstrings and claim
check docstrings that it places on generated pages.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

__all__ = ["RstToMarkdown", "rst_to_markdown"]

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const)?:`(~?)([^`]+)`")
_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")


def _xref(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    if "<" in target and target.endswith(">"):  # :func:`text <target>`
        target = target.split("<", 1)[0].strip()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _inline_math(match: re.Match[str]) -> str:
    return "$" + " ".join(match.group(1).split("\n")).strip() + "$"


def _math_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group("indent")
        body = [match.group("rest")] if match.group("rest").strip() else []
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():  # the blank lines after the block belong to the text
            block.pop()
            i -= 1
        body += textwrap.dedent("\n".join(block)).strip("\n").splitlines() if block else []
        if out and out[-1].strip():
            out.append("")
        out += [f"{indent}$$", *(f"{indent}{line}" for line in body if line.strip()), f"{indent}$$"]
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


def _doctest_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block = []
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            block.append(lines[i][len(indent) :])
            i += 1
        if out and out[-1].strip():
            out.append("")
        out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```", ""]
    return out


def rst_to_markdown(text: str) -> str:
    """The Markdown rendering of a docstring written with the RST constructs listed in the module docstring."""
    lines = _doctest_blocks(_math_blocks(text.splitlines()))
    segments: list[list[str]] = [[]]  # alternating: prose, fenced block, prose, ...
    for line in lines:
        opens = line.lstrip().startswith("```")
        if opens and len(segments) % 2 == 1:
            segments.append([line])
        elif opens:
            segments[-1].append(line)
            segments.append([])
        else:
            segments[-1].append(line)
    converted = []
    for index, segment in enumerate(segments):
        chunk = "\n".join(segment)
        if index % 2 == 0:  # prose: roles may wrap over a line break
            chunk = _XREF_ROLE.sub(_xref, _MATH_ROLE.sub(_inline_math, chunk))
        converted.append(chunk)
    return "\n".join(c for c in converted if c or len(converted) == 1)


class RstToMarkdown(griffe.Extension):
    """Griffe extension: every loaded docstring goes through :func:`rst_to_markdown` before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        """A module constant documented by ``#:`` comments above it (Sphinx's convention): they are its docstring."""
        if attr.docstring is not None or not attr.lineno or not isinstance(attr.parent, griffe.Module):
            return
        lines = attr.parent.lines
        comment: list[str] = []
        index = attr.lineno - 2
        while index >= 0 and lines[index].lstrip().startswith("#:"):
            comment.insert(0, lines[index].lstrip()[2:].strip())
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(rst_to_markdown("\n".join(comment)), parent=attr, lineno=index + 2)
