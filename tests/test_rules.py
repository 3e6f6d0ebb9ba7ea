"""The rules file: the shipped docs/rules.yaml loads and keeps its promises; a broken one is refused
in one line naming the claim, the key, the value and what is allowed; rules_commit finds its commit."""

import copy
import subprocess
import sys

import pytest
import yaml

from critical_periods.reproduction.rules import RULES_FILE, RulesError, load_rules, parse_rules, rules_commit

DOCUMENT = yaml.safe_load(RULES_FILE.read_text())


def test_the_shipped_rules_load_and_every_judged_rule_has_a_control_and_five_seeds():
    rules = load_rules()
    judged = [r for r in rules.rules if r.kind == "judged"]
    assert judged and all(r.control is not None and r.seeds >= 5 for r in judged)
    assert len({r.id for r in rules.rules}) == len(rules.rules)
    # the history is the true one: rules changed after their results were seen say so
    assert rules["achille-permutation-no-critical-period"].amended_after_results
    assert rules["achille-sensitivity-window"].amended_after_results
    assert not rules["achille-depth"].amended_after_results
    assert rules["fort-stiffness-rule-retired"].kind == "retired"
    assert rules["cka-deficit-vs-clean"].kind == "observed"
    assert rules.n_resamples >= 1000


def mutated(edit) -> dict:
    document = copy.deepcopy(DOCUMENT)
    edit(document["rules"][0])
    return document


@pytest.mark.parametrize("edit,message", [
    (lambda r: r.update(seeds=3), "claim 'achille-blur-lasting': seeds=3 is not allowed: a whole number >= 5"),
    (lambda r: r["parts"][0].update(direction="up"),
     "claim 'achille-blur-lasting': parts[0].direction='up' is not allowed: one of increase, decrease, equivalent"),
    (lambda r: r["parts"][1].update(minimal_effect=-1), "parts[1].minimal_effect=-1 is not allowed: a number >= 0"),
    (lambda r: r.pop("control"), "claim 'achille-blur-lasting': control=None is not allowed: a mapping {name, construction}"),
    (lambda r: r.update(kind="exploratory"), "kind='exploratory' is not allowed: one of judged, observed, retired"),
    (lambda r: r.update(models=["resnet"]), "models=['resnet'] is not allowed: a non-empty list of mlp, conv1d"),
    (lambda r: r["history"][1].pop("results_seen"), "history[1].results_seen=None is not allowed: which results were seen"),
    (lambda r: r.update(id="Blur Lasting"), "rules[0]: id='Blur Lasting' is not allowed: lower-case words joined by '-'"),
    (lambda r: r["parts"][0].update(statistic=""), "parts[0].statistic='' is not allowed: a non-empty string"),
])
def test_a_broken_rule_is_refused_in_one_line(edit, message):
    with pytest.raises(RulesError) as error:
        parse_rules(mutated(edit))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_duplicate_id_and_bad_yaml_are_refused(tmp_path):
    document = copy.deepcopy(DOCUMENT)
    document["rules"].append(copy.deepcopy(document["rules"][0]))
    with pytest.raises(RulesError, match="id='achille-blur-lasting' is not allowed: an id used once"):
        parse_rules(document)
    bad = tmp_path / "rules.yaml"
    bad.write_text("schema: 1\nrules:\n  - id: x\n   kind: judged\n")
    with pytest.raises(RulesError, match="is not valid YAML at line"):
        load_rules(bad)


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


def test_rules_commit_is_the_last_commit_that_touched_the_file(tmp_path):
    rules = tmp_path / "docs" / "rules.yaml"
    rules.parent.mkdir()
    assert rules_commit(rules) is None  # not a checkout
    git("init", "-q", cwd=tmp_path)
    rules.write_text(RULES_FILE.read_text())
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "rules", cwd=tmp_path)
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "other.txt").write_text("results")
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "results", cwd=tmp_path)
    assert rules_commit(rules) == first  # a later commit that did not touch the rules does not count


def test_the_reproduction_refuses_a_broken_rules_file_before_any_run(tmp_path):
    document = copy.deepcopy(DOCUMENT)
    document["rules"][0]["seeds"] = 2
    bad = tmp_path / "rules.yaml"
    bad.write_text(yaml.safe_dump(document))
    result = subprocess.run([sys.executable, "-m", "critical_periods.reproduce", "--quick", "--rules", str(bad),
                             "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: rules file: claim 'achille-blur-lasting': seeds=2 is not allowed: a whole number >= 5"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "docs").exists()
