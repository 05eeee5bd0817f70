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


#: the smallest protocol that runs end to end: USDRL's row 7 and its random-init control on a 36-sample
#: synthetic set, one epoch of the tiny DSTE, kNN-1 (a few seconds on one core)
TINY_PROTOCOL = """\
name: tiny
version: 1
paper_table: table5_ablation
rows:
  - {id: "7", label: "DSTE, MG-FD with XC", encoder: dste, objective: mgfd}
  - {id: R-DSTE, label: "DSTE, random init", encoder: dste, objective: null}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {seed: 0, num_classes: 3, samples_per_class_subject_camera: 1}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations:
      knn: {k: 1}
"""


@pytest.fixture
def tiny_protocol(tmp_path) -> Path:
    """:data:`TINY_PROTOCOL` written to ``tmp_path/tiny.yaml``; a test edits the file for its own case."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_PROTOCOL)
    return path


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
