"""The README and docs/ stand on their own: every relative link leads to a file or folder of the repository.

Links are Markdown inline links and images (``[text](target)``, ``![alt](target)``), reference definitions
(``[name]: target``) and HTML ``href``/``src`` attributes, outside code blocks and code spans. Absolute URLs
(``https:``, ``mailto:``) and bare ``#anchors`` are not checked; an anchor after a path is dropped (anchors are
optional). A path mentioned as code that names a Markdown file (``docs/x.md``, ``../y.md``) must exist too: that is
how the README pointed at a design document no user of the repository has.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HTML_ATTRIBUTE = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
MARKDOWN_PATH = re.compile(r"^[\w./-]+\.md$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, …


def _without_code(text: str) -> str:
    return CODE_SPAN.sub("", FENCE.sub("", text))


def relative_links(text: str) -> list[str]:
    prose = _without_code(text)
    found = [m.group(1) for pattern in (INLINE_LINK, REFERENCE, HTML_ATTRIBUTE) for m in pattern.finditer(prose)]
    return [link for link in found if not EXTERNAL.match(link) and not link.startswith("#")]


def markdown_paths_in_code(text: str) -> list[str]:
    spans = (m.group(2).strip() for m in CODE_SPAN.finditer(FENCE.sub("", text)))
    return [span for span in spans if MARKDOWN_PATH.match(span) and "/" in span]


def _resolves(document: Path, link: str, *, also_from_root: bool = False) -> bool:
    path = unquote(link.split("#", 1)[0].split("?", 1)[0])
    if not path:
        return True
    bases = [document.parent, ROOT] if also_from_root else [document.parent]
    for base in bases:
        target = (ROOT / path.lstrip("/")) if path.startswith("/") else (base / path)
        target = target.resolve()
        if target.is_relative_to(ROOT) and target.exists():
            return True
    return False


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    broken = [link for link in relative_links(text) if not _resolves(document, link)]
    assert not broken, f"{document.relative_to(ROOT)}: links to nothing in the repository: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_markdown_file_named_as_code_exists(document: Path) -> None:
    # Named from the document's folder or from the repository root (READMEs say `docs/x.md` either way).
    text = document.read_text(encoding="utf-8")
    missing = [p for p in markdown_paths_in_code(text) if not _resolves(document, p, also_from_root=True)]
    assert not missing, f"{document.relative_to(ROOT)}: names Markdown files that are not in the repository: {missing}"


def test_the_design_and_the_map_are_linked_from_the_readme() -> None:
    links = relative_links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "docs/design.md" in links and "docs/architecture.md" in links


def test_the_link_finder_itself() -> None:
    text = """
A [guide](docs/guide.md#setup), an ![image](img/a.png "title"), a [site](https://example.com), an [anchor](#x),
a [nested [bracket]](../up.md), <a href="page.html">html</a>, `[not](a-link.md)` and `../shared/DESIGN.md`.

[ref]: docs/ref.md

```sh
[inside](a/fence.md) `docs/fenced.md`
```
"""
    assert relative_links(text) == ["docs/guide.md#setup", "img/a.png", "../up.md", "docs/ref.md", "page.html"]
    assert markdown_paths_in_code(text) == ["../shared/DESIGN.md"]
    assert not _resolves(ROOT / "README.md", "../shared/DESIGN.md")  # outside the repository: not resolved
    assert _resolves(ROOT / "README.md", "docs/design.md#4-public-interfaces")
