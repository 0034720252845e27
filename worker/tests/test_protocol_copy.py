"""The worker's packaged copy of protocol/ (worker/l3prune/protocol/, what an installed worker validates against)
is the checkout's protocol/, byte for byte; scripts/generate-protocol.mjs writes it."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PROTOCOL

COPY = Path(__file__).resolve().parents[1] / "l3prune" / "protocol"


def schema_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.schema.json"))


@pytest.fixture(scope="module")
def protocol() -> Path:
    if not PROTOCOL.is_dir():
        pytest.skip("no protocol/ folder: this worker is not in a checkout, so its copy is the only one")
    return PROTOCOL


def test_every_schema_of_protocol_has_an_identical_copy_in_the_worker_package(protocol):
    stale = [name for name in schema_files(protocol) if not (COPY / name).is_file() or (COPY / name).read_bytes() != (protocol / name).read_bytes()]
    assert not stale, f"worker/l3prune/protocol/ is stale for {stale}; run `node scripts/generate-protocol.mjs`"


def test_the_copy_holds_no_schema_that_protocol_has_not(protocol):
    extra = sorted(set(schema_files(COPY)) - set(schema_files(protocol)))
    assert not extra, f"worker/l3prune/protocol/ has schemas protocol/ does not: {extra}"
