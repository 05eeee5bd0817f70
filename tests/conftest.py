from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
#: reference outputs of the official code (h32 checkpoints, inputs, outputs, the loss fixture), kept in the
#: repository so that the parity tests behind the README's claims run in any clone
OFFICIAL_FIXTURES = ROOT / "tests" / "fixtures" / "official_usdrl"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real recorded samples); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not available ({SHARED_DATA} is absent)")
    return SHARED_DATA


@pytest.fixture
def official_fixtures() -> Path:
    """``tests/fixtures/official_usdrl`` (official-code reference outputs, in the repository)."""
    if not OFFICIAL_FIXTURES.is_dir():
        pytest.skip(f"official reference fixtures not available ({OFFICIAL_FIXTURES} is absent)")
    return OFFICIAL_FIXTURES


#: the rows the tiny protocols are made of (Table 5's ids)
TINY_ROWS = {
    "7": '{id: "7", paper_row: 7, label: "DSTE, MG-FD with XC", encoder: dste, objective: mgfd}',
    "5": '{id: "5", paper_row: 5, label: "DSTE, MG-FD without XC", encoder: dste, objective: mgfd, '
         'objective_options: {xc: false}}',
    "4": '{id: "4", paper_row: 4, label: "DSTE, negative contrastive", encoder: dste, objective: negative_contrastive}',
    "R-DSTE": '{id: R-DSTE, label: "DSTE, random init", encoder: dste, objective: null}',
}


def make_tiny_protocol(name: str = "tiny", rows: tuple[str, ...] = ("7", "R-DSTE"), *,
                       dataset: str = "seed: 0, num_classes: 3, samples_per_class_subject_camera: 1",
                       paper_setting: str | None = None, pretrain: str = "epochs: 1, batch_size: 16",
                       evaluations: str = "knn: {k: 1}", preset: str = "") -> str:
    """The YAML of a tiny protocol: ``rows`` of :data:`TINY_ROWS` on a synthetic set (``dataset``: its
    options), the tiny DSTE, the ``pretrain`` schedule and ``evaluations`` (YAML flow mappings' insides), and
    any further ``preset`` keys (YAML lines at the preset's indentation). The defaults run in seconds."""
    setting = f", paper_setting: {paper_setting}" if paper_setting else ""
    extra = "".join(f"    {line}\n" for line in preset.splitlines() if line.strip())
    return (f"name: {name}\nversion: 1\npaper_table: table5_ablation\nrows:\n"
            + "".join(f"  - {TINY_ROWS[r]}\n" for r in rows)
            + "presets:\n  demo:\n"
            + f"    dataset: {{name: synthetic, split: xsub, options: {{{dataset}}}{setting}}}\n"
            + f"    encoder_preset: tiny\n{extra}    pretrain: {{{pretrain}}}\n    evaluations: {{{evaluations}}}\n")


@pytest.fixture
def tiny_protocol():
    """:func:`make_tiny_protocol`: the YAML text of a tiny protocol, shaped by keyword (a test writes it
    where it needs it)."""
    return make_tiny_protocol


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP threads
    waiting on each other made these tests 5x slower; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, _cache_home):
    """Readers' caches go to a temporary folder, not the user's ~/.cache, and no test sees (or leaves
    behind) a data root: `run --data-root` sets USDRL_DATA in the process, restored here after each test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))
    monkeypatch.delenv("USDRL_DATA", raising=False)
