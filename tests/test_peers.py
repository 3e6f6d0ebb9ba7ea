"""benchmarks/peers.py on a tiny case: the project's probes agree with BackPACK, nngeometry, PyHessian,
curvlinops and hessian-eigenthings. Skipped unless the peers extra is installed (pip install -e ".[peers]")."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

for peer in ("backpack", "nngeometry", "pyhessian", "curvlinops", "hessian_eigenthings"):
    pytest.importorskip(peer)

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


def _peers_module():
    spec = importlib.util.spec_from_file_location("peers_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore")  # the peers' own deprecation and backward-hook warnings
def test_every_peer_agrees_with_the_project_on_a_tiny_mlp():
    peers = _peers_module()
    results = list(peers.run_model("mlp", peers.PROBES, list(peers.PEERS), n=16, repeats=1, starts=2))
    compared = {(r.probe, r.peer): r for r in results}
    # every probe is compared with at least one peer, every peer is used, and all of them agree
    assert {probe for probe, _ in compared} == set(peers.PROBES)
    assert {peer for _, peer in compared} == {cls.name for cls in peers.PEERS.values()}
    for (probe, peer), result in compared.items():
        assert result.agrees is True, f"{probe} vs {peer}: {result.check}"
        assert result.project_ms > 0 and result.peer_ms > 0
        assert len(result.pair_ratios) == 1 and result.spread == f"{result.ratio:.2f}-{result.ratio:.2f}"
