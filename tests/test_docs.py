"""The docs point at things that exist: DESIGN.md's feature map at files, the reliability
checklist at tests, and every page's relative links at files."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted(DOCS.glob("*.md"))]


def feature_map_paths() -> list[tuple[str, str]]:
    """(feature, path from the repository root) for every path in DESIGN.md's feature map."""
    text = (DOCS / "DESIGN.md").read_text()
    section = text.split("## Feature map", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    prefixes = ["" if name == "elsewhere" else name for name in header[1:]]
    found = []
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for prefix, cell in zip(prefixes, cells[1:], strict=True):
            for path in re.findall(r"`([^`]+)`", cell):
                found.append((cells[0], prefix + path))
    return found


def test_every_path_in_the_feature_map_exists():
    paths = feature_map_paths()
    assert len(paths) > 100, "the feature map was not found or not parsed"
    missing = [f"{feature}: {path}" for feature, path in paths if not (ROOT / path).exists()]
    assert not missing, "DESIGN.md's feature map names files that do not exist:\n" + "\n".join(
        missing
    )


def test_every_test_the_checklist_names_exists():
    text = (DOCS / "reliability-checklist.md").read_text()
    missing = []
    named = 0
    for line in text.splitlines():
        current: Path | None = None
        for file, name in re.findall(r"`(tests/[^`:]+\.py)?(?:::([A-Za-z_0-9]+)[^`]*)?`", line):
            if file:
                current = ROOT / file
                if not current.exists():
                    missing.append(file)
                    continue
            if name and current is not None and current.exists():
                named += 1
                if not re.search(rf"def {name}\b", current.read_text()):
                    missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert named > 50, "the checklist's test names were not found"
    assert not missing, "the reliability checklist names tests that do not exist:\n" + "\n".join(
        missing
    )


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)


def test_the_readme_fits_on_one_screen():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 80, f"README.md has {lines} lines; topics belong in docs/"
