"""The documentation: the site builds with ``mkdocs build --strict`` (a broken link, a missing page or a
docstring the API reference cannot parse fails), the public contract is documented, the README is a front
door, and nothing points outside the repository."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import usdrl_bench
from usdrl_bench import api, extend

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs") is None and subprocess.run([sys.executable, "-c", "import mkdocs"]).returncode:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-4000:]
    api_page = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "run_protocols" in api_page and "Run several protocols" in api_page  # generated from the docstring


def test_every_public_name_is_documented():
    """Every public function and class (type aliases and constants aside) has a docstring."""
    def missing(module, names):
        objects = [(n, getattr(module, n)) for n in names]
        return [n for n, o in objects if (inspect.isfunction(o) or inspect.isclass(o)) and not (o.__doc__ or "").strip()]

    undocumented = missing(usdrl_bench, [n for n in usdrl_bench.__all__ if n != "__version__"])
    undocumented += [f"api.{n}" for n in missing(api, api.__all__)]
    undocumented += [f"extend.{n}" for n in missing(extend, extend.__all__)]
    assert len(usdrl_bench.__all__) > 25 and len(extend.__all__) > 25
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_the_readme_is_a_front_door_and_every_page_is_in_the_site():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for heading in ("## Install", "## The two commands", "## What works", "## What does not work yet", "## Documentation"):
        assert heading in readme
    linked = set(re.findall(r"\]\(docs/([\w\-/]+\.md)\)", readme))
    assert linked and all((ROOT / "docs" / page).is_file() for page in linked), linked
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert {p for p in pages if p not in nav} == set()  # no page left out of the navigation


def test_nothing_points_outside_the_repository():
    texts = [ROOT / "README.md", ROOT / "mkdocs.yml", *(ROOT / "docs").rglob("*.md"),
             *(ROOT / "usdrl_bench").rglob("*.py"), *(ROOT / "usdrl_bench").rglob("*.yaml"), *(ROOT / "baselines").rglob("*.py")]
    outside = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in texts
               for m in re.finditer(r"\.\./shared|shared/design|shared/data|\.\./seeds", p.read_text())]
    assert not outside, outside


def test_the_readme_test_command_prints_its_counts():
    """pytest prints its "N passed, M skipped" line at -q, not at -qq: the README's test command plus the
    project's addopts must not reach -qq (the command once said -q, and the addopts -q again)."""
    import re
    import shlex
    import tomllib

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    command = next(line.split("&&")[-1].strip() for line in readme.splitlines() if "python -m pytest" in line
                   and "pip install" in line)
    addopts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"].get("addopts", "")
    quiet = sum(len(m) for m in re.findall(r"(?<![\w-])-(q+)\b", " ".join(shlex.split(command) + shlex.split(addopts))))
    quiet += sum(1 for a in shlex.split(command) + shlex.split(addopts) if a == "--quiet")
    assert quiet <= 1, f"{command!r} with addopts {addopts!r} is -{'q' * quiet}: no pass/skip counts"
    ci = (root / ".ci" / "run").read_text()
    assert command in ci, "CI runs the README's test command exactly"
