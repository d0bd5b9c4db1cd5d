"""docs/behaviour.md is the document that "behaviour §N" cites, and the docs' links lead somewhere.

Code, tests and scripts cite the request-by-request behaviour by section number. A citation of a
section that does not exist, or a link in the README or docs/ to a file or heading that does not
exist, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BEHAVIOUR = ROOT / "docs" / "behaviour.md"
CITING = ("kong_plugins", "tests", "scripts", "bench")  # bench/: the benchmark, once it lives there
SKIP_DIRS = {"node_modules", "__pycache__", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

_SECTION = r"§\d+(?:\.\d+)?"
# "behaviour §5", "Behaviour §5/§6/§7", "behaviour §8–§10", "behaviour §3, §4", "behaviour §9 and §10",
# "behaviour §11's yardstick"; a line break may fall anywhere between the parts.
_CITATION = re.compile(rf"[Bb]ehaviour(?:'s)?\s+({_SECTION}(?:\s*(?:/|–|-|,|and)\s*{_SECTION})*)")
_HEADING = re.compile(r"^(#{2,3}) (\d+)(?:\.(\d+))?\.? (\S.*)$", re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def cited_sections(text: str) -> list[str]:
    """Every section number a text cites as "behaviour §N" or "behaviour §N.M"."""
    return [number for match in _CITATION.finditer(text) for number in re.findall(r"§(\d+(?:\.\d+)?)", match.group(1))]


def sections() -> dict[str, str]:
    """The numbered sections of docs/behaviour.md ("4" and "4.2" alike) and their titles."""
    found: dict[str, str] = {}
    for level, major, minor, title in _HEADING.findall(BEHAVIOUR.read_text()):
        number = major if minor == "" else f"{major}.{minor}"
        assert (level == "##") == (minor == ""), f"§{number}: level-2 headings are §N, level-3 headings §N.M"
        assert number not in found, f"§{number} is numbered twice"
        found[number] = title
    return found


def citing_files() -> list[Path]:
    files = []
    for top in CITING:
        for path in sorted((ROOT / top).rglob("*")):  # an absent directory yields nothing
            if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
                files.append(path)
    return [*files, ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(title) for title in re.findall(r"^#{1,6} (.+)$", path.read_text(), re.M)}


def test_the_citation_pattern_finds_each_form() -> None:
    text = (
        "Behaviour §5/§6/§7 and behaviour §8–§10; behaviour §3, §4; behaviour §9 and §10;\n"
        "behaviour §11's yardstick; (behaviour\n§4.2); not behaviour 5, not section §6."
    )
    assert cited_sections(text) == ["5", "6", "7", "8", "10", "3", "4", "9", "10", "11", "4.2"]


def test_behaviour_keeps_the_section_numbers_the_code_cites() -> None:
    found = sections()
    top = [number for number in found if "." not in number]
    assert top == [str(n) for n in range(1, 15)], "§1–§14, in order"
    titles = {number: found[number].lower() for number in top}
    for number, word in {
        "1": "identity",
        "2": "fail closed",
        "3": "metadata",
        "4": "challenges",
        "5": "jwt",
        "6": "introspection",
        "7": "outbound http",
        "8": "upstream request",
        "9": "token exchange",
        "10": "kong identity",
        "11": "performance",
        "12": "scopes",
    }.items():
        assert word in titles[number], f"§{number} is about {word}: {found[number]}"
    for number in found:
        if "." in number:
            major, minor = number.split(".")
            assert major in found and (minor == "1" or f"{major}.{int(minor) - 1}" in found), f"§{number} out of order"


def test_every_behaviour_citation_names_a_section_that_exists() -> None:
    found = sections()
    missing = []
    count = 0
    for path in citing_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number in cited_sections(text):
            count += 1
            if number not in found:
                missing.append(f"{path.relative_to(ROOT)}: behaviour §{number}")
    assert count >= 50, f"only {count} citations found: is the pattern still right?"
    assert not missing, "citations of sections docs/behaviour.md does not have:\n" + "\n".join(missing)


def test_cross_references_inside_behaviour_name_sections_that_exist() -> None:
    text = BEHAVIOUR.read_text()
    # "§4.8" is one of ours; "RFC 6750 §3.1" (a number, a space, then §) is a standard's.
    references = re.findall(r"(?<!\d\s)§(\d+(?:\.\d+)*)", text)
    assert len(references) >= 20
    found = sections()
    assert [number for number in references if number not in found] == []


def test_a_citation_of_a_missing_section_is_caught() -> None:
    found = sections()
    assert [n for n in cited_sections("see behaviour " + "§99 and §4.99") if n not in found] == ["99", "4.99"]


def test_links_in_the_readme_and_docs_lead_to_files_and_headings_that_exist() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    count = 0
    for document in documents:
        for target in _LINK.findall(document.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            count += 1
            file_part, _, anchor = target.partition("#")
            path = (document.parent / file_part).resolve() if file_part else document
            if not path.exists() or ROOT not in (path, *path.parents):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and (path.suffix != ".md" or anchor not in anchors(path)):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert count >= 10, f"only {count} links found: is the pattern still right?"
    assert not broken, "\n".join(broken)


def test_the_package_says_where_behaviour_is() -> None:
    docstring = (ROOT / "kong_plugins" / "ai_mcp_oauth2" / "__init__.py").read_text()
    assert "docs/behaviour.md" in docstring
