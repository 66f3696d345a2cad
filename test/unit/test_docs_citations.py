"""Code and docs cite `docs/DESIGN.md §N`: the file exists in the repository and has that section."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_design_citation_names_an_existing_section() -> None:
    design = (REPO / "docs" / "DESIGN.md").read_text()
    sections = {int(m) for m in re.findall(r"^## (\d+)\. ", design, flags=re.M)}
    assert sections >= {1, 2, 3, 4, 5}
    cited = {}
    for path in [*REPO.glob("qdbev_core/**/*.py"), *REPO.glob("qdbev_ros/*.py"), *REPO.glob("test/**/*.py"),
                 *REPO.glob("launch/*.py"), *REPO.glob("docs/*.md"), REPO / "README.md"]:
        text = path.read_text(errors="replace")
        # a bare "DESIGN.md" (without docs/) meant the design brief outside the repository
        bare = [m.start() for m in re.finditer(r"(?<!docs/)(?<!/)DESIGN\.md", text)]
        assert not bare or path.name == "DESIGN.md" or path == Path(__file__).resolve(), f"{path}: cites DESIGN.md without docs/ (not in this repository)"
        for n in re.findall(r"docs/DESIGN\.md §(\d+)", text):
            cited.setdefault(int(n), []).append(path.relative_to(REPO))
    missing = {n: files for n, files in cited.items() if n not in sections}
    assert not missing, f"citations of sections docs/DESIGN.md does not have: {missing}"


def test_readme_and_docs_link_only_files_that_exist() -> None:
    """Every relative markdown link in README.md and docs/*.md points at a file of the repository."""
    missing = []
    for md in [REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("docs/history/*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (md.parent / target).exists():
                missing.append(f"{md.relative_to(REPO)} -> {target}")
    assert not missing, missing
