"""The documentation holds together: every link in README.md, docs/ and benchmarks/RESULTS.md resolves to
a file (and heading) inside the repository, none points outside it, and the README stays short.

Links are read the way a Markdown renderer reads them, outside fenced code blocks and inline code:
inline links and images ``[text](target)``, reference definitions ``[id]: target``, autolinks
``<scheme:...>``, HTML ``href``/``src`` attributes, and bare ``http(s)://`` addresses in prose.  A target
with a scheme (``https:``, ``mailto:``, ...) or an absolute path is outside the repository and refused:
papers are cited as plain-text references.  A relative target must exist, must stay inside the
repository after resolving ``..``, and a ``#fragment`` must name a heading of the target Markdown file,
slugged as GitHub does (lower case; characters other than letters, digits, ``-``, ``_`` and spaces
dropped; spaces become ``-``; repeated headings get ``-1``, ``-2``, ...).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^()\s]+(?:\([^()\s]*\)[^()\s]*)*)"
                     r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*)>")
_HTML_ATTR = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_BARE_URL = re.compile(r"\bhttps?://[^\s)>\]\"'<]+", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md, every Markdown file under docs/, and benchmarks/RESULTS.md (those that exist)."""
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md")), root / "benchmarks" / "RESULTS.md"]
    return [f for f in files if f.is_file()]


def _prose_lines(text: str):
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        yield number, _CODE_SPAN.sub(lambda s: " " * len(s.group(0)), line)


def links(text: str) -> list[tuple[int, str]]:
    """Every link target in a Markdown text, with its line number."""
    found = []
    for number, line in _prose_lines(text):
        targets = [m.group(1) for m in _INLINE.finditer(line)]
        targets += [m.group(1) for m in _REFERENCE.finditer(line)]
        targets += [m.group(1) for m in _AUTOLINK.finditer(line)]
        targets += [m.group(1) for m in _HTML_ATTR.finditer(line)]
        targets = [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in targets]
        bare = [u for u in _BARE_URL.findall(line) if not any(u in t for t in targets)]
        found += [(number, t) for t in targets + bare]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading text (Markdown links reduced to their text, code marks dropped)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, numbered as GitHub numbers repeated headings."""
    seen: Counter = Counter()
    out = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8").replace("`", "")):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        out.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return out


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the links of one Markdown file (empty when every link resolves)."""
    problems = []
    rel = path.relative_to(root)
    for number, target in links(path.read_text(encoding="utf-8")):
        where = f"{rel}:{number}: {target!r}"
        if _SCHEME.match(target):
            problems.append(f"{where} points outside the repository (cite papers as plain text)")
            continue
        if target.startswith("/"):
            problems.append(f"{where} is an absolute path; use a path relative to the file")
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        try:
            dest.relative_to(root)
        except ValueError:
            problems.append(f"{where} leaves the repository")
            continue
        if not dest.exists():
            problems.append(f"{where} does not exist")
            continue
        if fragment and dest.suffix == ".md" and unquote(fragment) not in anchors(dest):
            problems.append(f"{where} names no heading of {dest.relative_to(root)}")
    return problems


def test_readme_is_at_most_300_lines():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; the limit is {README_MAX_LINES} (move detail to docs/)"


def test_readme_keeps_the_test_command_that_ci_runs():
    # .ci/run greps the README for this line and runs it verbatim in a fresh environment
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith('pip install -e ".[test]"') for line in lines)


def test_every_link_in_readme_and_docs_resolves_inside_the_repository():
    files = doc_files()
    assert ROOT / "README.md" in files and (ROOT / "docs" / "index.md") in files
    problems = [p for f in files for p in link_problems(f)]
    assert not problems, "broken documentation links:\n" + "\n".join(problems)


def test_every_docs_page_is_reachable_from_the_readme():
    # the README links docs/index.md, which links the pages; a page nobody links is lost
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for _, target in links(page.read_text(encoding="utf-8")):
            file_part = target.partition("#")[0]
            if file_part and not _SCHEME.match(target) and file_part.endswith(".md"):
                dest = (page.parent / unquote(file_part)).resolve()
                if dest.is_file():
                    todo.append(dest)
    unreachable = [str(f.relative_to(ROOT)) for f in doc_files() if f.resolve() not in reached]
    assert not unreachable, f"pages no link leads to from README.md: {unreachable}"


def test_the_checker_finds_every_kind_of_bad_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Known `limits`, measured\n\n## Known limits, measured\n")
    (tmp_path / "README.md").write_text(
        "# Title\n\n"
        "[ok](docs/other.md) [ok](docs/other.md#known-limits-measured) [ok](docs/other.md#known-limits-measured-1) "
        "[ok](code.py) [ok](#title) ![ok](code.py)\n"
        "[missing](docs/none.md) [anchor](docs/other.md#nowhere) [web](https://example.org/paper)\n"
        "[escape](../outside.md) [absolute](/etc/passwd) see http://example.org/x and <https://example.org>\n"
        "[ref]: mailto:someone@example.org\n"
        '<a href="https://example.org/a">a</a>\n'
        "`[in code](nowhere.md) https://example.org/code`\n"
        "```\n[in a fence](nowhere.md) https://example.org/fence\n```\n")
    problems = link_problems(tmp_path / "README.md", root=tmp_path)
    bad = sorted(p.split(": ", 1)[1].split("'")[1] for p in problems)
    assert bad == sorted(["docs/none.md", "docs/other.md#nowhere", "https://example.org/paper", "../outside.md",
                          "/etc/passwd", "http://example.org/x", "https://example.org",
                          "mailto:someone@example.org", "https://example.org/a"])
    assert anchors(tmp_path / "docs" / "other.md") == {"other-page", "known-limits-measured",
                                                        "known-limits-measured-1"}
