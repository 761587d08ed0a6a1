"""Every markdown document the repository cites is in the repository, and every section it cites exists.

The files scanned are the repository's own: tracked files plus untracked files that git does not
ignore (``git ls-files --cached --others --exclude-standard``), binary files skipped. A reference
such as ``docs/DESIGN.md`` or ``checkpoints/README.md`` resolves against the repository root or
against the citing file's folder (``benchmarks/common.py`` names its results file by the bare file
name); one followed by a section sign and a number, as in the code's citations of the design
document, must also name a heading of that document.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# a path ending in .md, not inside a longer path or word, not a URL (URLs are blanked out first)
MD_REF = re.compile(r"(?<![\w./$-])((?:\.\.?/)*(?:[\w.-]+/)*[\w-][\w.-]*\.md)(?!\w)")
SECTION_REF = re.compile(MD_REF.pattern + r"[\s#*\"']*§\s*(\d+(?:\.\d+)*)")
URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)[.\s]", re.MULTILINE)
# guidance kept outside the repository must never be cited (strings split so this file is clean)
OUTSIDE = ("..", "/shared"), ("shared", "/DESIGN")


@lru_cache(maxsize=1)
def repo_root() -> Path:
    """The root of the git checkout holding this file; skips the tests outside a git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=HERE, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return Path(done.stdout.strip())


@lru_cache(maxsize=1)
def repository_files() -> frozenset[str]:
    """Tracked and untracked-but-not-ignored files that exist, as POSIX paths relative to the root."""
    root = repo_root()
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode("utf-8", "surrogateescape")
    return frozenset(p for p in listed.split("\0") if p and (root / p).is_file())


@lru_cache(maxsize=1)
def text_files() -> dict[str, str]:
    """Path -> text of every repository file that is UTF-8 text without NUL bytes."""
    root = repo_root()
    texts = {}
    for rel in sorted(repository_files()):
        path = root / rel
        with open(path, "rb") as handle:
            if b"\0" in handle.read(8192):
                continue
        try:
            texts[rel] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def resolve(citing: str, ref: str) -> tuple[str | None, list[str]]:
    """The repository path that ``ref`` in file ``citing`` names (None if none), and the candidates tried."""
    root = repo_root()
    tried = []
    for base in (root, (root / citing).parent):
        candidate = (base / ref).resolve()
        try:
            rel = candidate.relative_to(root).as_posix()
        except ValueError:  # outside the repository
            tried.append(str(candidate))
            continue
        tried.append(rel)
        if rel in repository_files():
            return rel, tried
    return None, tried


def line_of(text: str, offset: int) -> int:
    """1-based line number of character ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1


def test_every_cited_markdown_document_is_in_the_repository():
    missing = []
    for rel, text in text_files().items():
        for match in MD_REF.finditer(URL.sub(lambda m: " " * len(m.group()), text)):
            found, tried = resolve(rel, match.group(1))
            if found is None:
                missing.append(f"{rel}:{line_of(text, match.start())}: cites {match.group(1)!r}, "
                               f"which is not in the repository (looked for {', '.join(tried)})")
    assert not missing, "\n".join(missing)


def test_every_cited_section_is_a_heading_of_its_document():
    missing = []
    for rel, text in text_files().items():
        for match in SECTION_REF.finditer(URL.sub(lambda m: " " * len(m.group()), text)):
            ref, section = match.group(1), match.group(2)
            found, _ = resolve(rel, ref)
            if found is None:
                continue  # reported by the test above
            headings = set(HEADING.findall(text_files().get(found, "")))
            if section not in headings:
                missing.append(f"{rel}:{line_of(text, match.start())}: cites {ref} §{section}, "
                               f"but {found} has no heading numbered {section}")
    assert not missing, "\n".join(missing)


def test_sections_cited_inside_the_design_document_exist():
    text = text_files().get("docs/DESIGN.md")
    assert text is not None, "docs/DESIGN.md is missing"
    headings = set(HEADING.findall(text))
    cited = {(m.group(1), line_of(text, m.start())) for m in re.finditer(r"§\s*(\d+(?:\.\d+)*)", text)}
    missing = [f"docs/DESIGN.md:{line}: cites §{number}, which is not a heading"
               for number, line in sorted(cited, key=lambda c: c[1]) if number not in headings]
    assert not missing, "\n".join(missing)


def test_no_file_cites_guidance_kept_outside_the_repository():
    needles = ["".join(parts) for parts in OUTSIDE]
    found = [f"{rel}:{line_of(text, text.find(needle))}: mentions {needle!r}"
             for rel, text in text_files().items() for needle in needles if needle in text]
    assert not found, "\n".join(found)
