"""The repo and the package are self-contained: no shipped file names a file that is not there.

"Shipped" is what users read: the code (supervisor/), the package's files (packaging/, etc/), the
documentation (README.md, docs/) and the build (Makefile, mk/). A repo path they name must exist in
the repo; a /usr/share/doc/svctl path must be one the package installs; and nothing may point at
the research notes the project was started from, which are in neither.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The package's build runs the unit tests in a staging copy (no .git, debian/ moved, no
# benchmarks/): the repo's layout is what is checked here, so only a checkout can be.
pytestmark = pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout (the .deb's build-time test run)")
SHIPPED = ("supervisor/", "packaging/", "etc/", "docs/", "README.md", "Makefile", "mk/", "setup.cfg")
# A repo-relative path: a top-level directory, then a file with an extension. Not preceded by a path
# character, so DIR/etc/jupyterhub/... and /usr/share/... are not taken for repo paths.
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:docs|etc|packaging|supervisor|tests|benchmarks|mk)/[\w./-]*"
                       r"\.(?:md|py|toml|tmpl|sh|in|8|json|png|mk|cfg|txt))\b")
DOC_PATH = re.compile(r"/usr/share/doc/svctl/([\w./-]*\w)")
OUTSIDE = re.compile(r"\.\./shared|design\.md|style\.md|packaging\.md|\bspec/[\w-]+\.md")


def shipped_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return [REPO / name for name in listed if name.startswith(SHIPPED) and (REPO / name).is_file()
            and "__pycache__" not in name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text()
    except (UnicodeDecodeError, OSError):
        return None


def installed_docs() -> set[str]:
    """Paths under /usr/share/doc/svctl/ that the package installs (dh_installdocs/-examples)."""
    docs = {Path(line).name for line in (REPO / "packaging/debian/svctl.docs").read_text().split()}
    examples = set()
    for pattern in (REPO / "packaging/debian/svctl.examples").read_text().split():
        examples |= {"examples/" + path.name for path in REPO.glob(pattern) if path.is_file()}
    return docs | examples | {"examples", "examples/"}


def test_every_repo_path_named_by_a_shipped_file_exists():
    dangling = [f"{path.relative_to(REPO)} names {match}" for path in shipped_files()
                if (text := text_of(path)) is not None
                for match in REPO_PATH.findall(text) if not (REPO / match).exists()]
    assert dangling == []


def test_every_packaged_doc_path_named_is_installed_by_the_package():
    installed = installed_docs()
    dangling = [f"{path.relative_to(REPO)} names /usr/share/doc/svctl/{match}" for path in shipped_files()
                if (text := text_of(path)) is not None
                for match in DOC_PATH.findall(text) if match.rstrip("/") not in installed and match not in installed]
    assert dangling == []


def test_relative_links_of_the_docs_resolve():
    dangling = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" not in target and not (path.parent / target).exists():
                dangling.append(f"{path.relative_to(REPO)} links {target}")
    assert dangling == []


def test_nothing_points_at_the_projects_research_notes():
    found = [f"{path.relative_to(REPO)}: {match}" for path in shipped_files()
             if (text := text_of(path)) is not None for match in OUTSIDE.findall(text)]
    assert found == []


def test_the_checks_see_a_dangling_name():
    # The scanners above must be able to fail: a made-up name is caught by each.
    assert REPO_PATH.findall("see docs/nowhere.md") == ["docs/nowhere.md"]
    assert not (REPO / "docs/nowhere.md").exists()
    assert DOC_PATH.findall("/usr/share/doc/svctl/nowhere.md") == ["nowhere.md"]
    assert "nowhere.md" not in installed_docs()
    # (the sample is put together from parts, so that this file itself names no such note)
    parent, notes = "../" + "shared", "design" + ".md"
    assert OUTSIDE.findall(f"as {parent}/{notes} says") == [parent, notes]
