"""The documentation holds as written: every link resolves, every suite example validates, the record
schema page is the code's, and the architecture page names every package and module there is."""

import re
from pathlib import Path

import pytest

import pebench.results
from pebench.cli.suites import load_suite
from pebench.runner.cells import expand

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md",
         ROOT / "suites" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page (as pebench.reports.write makes them)."""
    from pebench.reports.write import _anchors

    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return set(_anchors([line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.name}: links that lead nowhere: {broken}"


def test_the_suite_examples_validate(tmp_path):
    blocks = re.findall(r"```yaml\n(# suites/\S+\n.*?)```", (ROOT / "docs" / "suites-reports-gate.md").read_text(),
                        flags=re.S)
    assert blocks, "the suites page shows a suite file"
    for block in blocks:
        (tmp_path / "quick.yaml").write_text((ROOT / "suites" / "quick.yaml").read_text())
        (tmp_path / "my.yaml").write_text(block)
        assert expand(load_suite(tmp_path / "my.yaml"))


def test_the_record_schema_page_is_the_codes():
    page = (ROOT / "docs" / "records.md").read_text(encoding="utf-8")
    assert pebench.results.__doc__.strip("\n") in page, (
        "docs/records.md differs from pebench/results.py's docstring; paste the docstring into the page")


def test_the_architecture_page_names_every_module():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = page[page.index("```text"):]
    missing = []
    for path in sorted((ROOT / "pebench").rglob("*.py")):
        relative = path.relative_to(ROOT / "pebench")
        if relative.name in ("__init__.py", "__main__.py") or relative.parent.name == "encodings":
            continue  # a package is named by its folder; encodings are one module per family, listed by `pebench list`
        if relative.stem not in tree:
            missing.append(str(relative))
    assert not missing, f"docs/architecture.md's tree does not name {missing}"


@pytest.mark.parametrize("page", [p for p in PAGES if "```python" in p.read_text(encoding="utf-8")],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_python_examples_run_as_written(page, monkeypatch):
    """Each Python block runs from the repository root; only the images an example says it has are given."""
    import torch

    monkeypatch.chdir(ROOT)
    for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
        namespace = {"images_384": torch.randn(2, 3, 384, 384)}
        exec(compile(block, f"{page.name} example", "exec"), namespace)  # noqa: S102 - the page's own code


def test_every_generated_table_matches_its_records():
    """tools/docs_tables.py regenerates each marked table of README and docs/ from the committed records it names;
    a number edited by hand, or records changed without regenerating, fail here."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "tools" / "docs_tables.py"), "--check"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    pages = [p for p in PAGES if "<!-- table " in p.read_text(encoding="utf-8")]
    assert len(pages) >= 5  # README, zoo, cost, data, fine-tune


def test_a_quoted_number_is_checked_against_its_record(monkeypatch):
    """A number quoted in prose is compared with the value it names, at its written decimals: the zoo's
    sin-cos native at 512 read 87.2 top-1, so 87.2 passes, a planted 88.2 and a cell that does not exist fail,
    and an `in FILE` quote fails when the file does not hold the number."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from docs_tables import QUOTE, _quote

    def problems(text: str) -> list[str]:
        found: list[str] = []
        QUOTE.sub(lambda match: _quote(match, found), text)
        return found

    assert problems("falls to 87.2<!-- zoo sincos native 512 top1 --> at 512") == []
    assert problems("falls to 87<!-- zoo sincos native 512 top1 --> at 512") == []
    assert "the record says 87.2" in problems("falls to 88.2<!-- zoo sincos native 512 top1 -->")[0]
    assert "names no value" in problems("reads 99.0<!-- zoo sincos native 999 top1 -->")[0]
    assert problems("ratio 0.993<!-- in results/benchmarks/profile_vs_timm.txt -->") == []
    assert "does not hold" in problems("ratio 0.994<!-- in results/benchmarks/profile_vs_timm.txt -->")[0]
    assert problems("range 0.975<!-- in results/gpu/h100-2026-11-23/README.md -->-0.995<!-- in "
                    "results/gpu/h100-2026-11-23/README.md -->") == []
