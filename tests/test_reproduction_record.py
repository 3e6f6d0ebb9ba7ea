"""The committed reproduction record (docs/reproduction.json) keeps the promises the report makes:
every judged claim rests on >= 5 seeds, carries a paired effect inside its 95% interval and a
negative control that did not pass, names a rules commit that precedes the results and still holds
its rule, and points at a figure that exists."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from critical_periods.vocabulary import Verdict

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "docs" / "reproduction.json").read_text())
CLAIMS = RECORD["claims"]
JUDGED = [c for c in CLAIMS if c["status"] != Verdict.OBSERVED.value]


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_every_status_is_from_the_closed_vocabulary():
    assert CLAIMS and {c["status"] for c in CLAIMS} <= set(Verdict.values())
    assert all(c["verdict"] == c["status"] for c in CLAIMS)
    assert len({c["id"] for c in CLAIMS}) == len(CLAIMS)  # unique ids


@pytest.mark.parametrize("claim", JUDGED, ids=lambda c: c["id"])
def test_a_judged_claim_has_its_seeds_effect_interval_and_a_control_that_failed(claim):
    decided = claim["status"] in (Verdict.REPRODUCED.value, Verdict.NOT_REPRODUCED.value, Verdict.PARTLY.value)
    if decided:
        assert claim["seeds"] >= 5
    if claim["ci95"] is not None:
        low, high = claim["ci95"]
        assert low <= claim["effect"] <= high
    elif decided:
        pytest.fail("a decided claim without an interval")
    assert claim["control"]["status"] != Verdict.REPRODUCED.value


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c["id"])
def test_a_claims_figure_exists(claim):
    if claim["figure"] is not None:
        assert (ROOT / claim["figure"]).is_file(), claim["figure"]


def test_the_rules_commit_precedes_the_results_and_holds_every_rule_judged():
    if git("rev-parse", "--git-dir").returncode != 0 or git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("not a full git checkout: the history is not here to check")
    commits = {c["rules_commit"] for c in CLAIMS}
    assert len(commits) == 1 and None not in commits
    (commit,) = commits
    results = git("log", "-1", "--format=%H", "--", "docs/reproduction.json").stdout.strip()
    assert results and commit != results
    assert git("merge-base", "--is-ancestor", commit, results).returncode == 0
    rules = yaml.safe_load(git("show", f"{commit}:docs/rules.yaml").stdout)["rules"]
    assert {c["rule_id"] for c in CLAIMS} <= {r["id"] for r in rules}
