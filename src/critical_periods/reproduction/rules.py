"""The pre-registered decision rules: ``docs/rules.yaml`` read, checked and typed.

A rule file that breaks the schema is refused with one line naming the claim id, the key, the value
and what is allowed, so a typo can never silently change how a claim is judged. ``rules_commit`` is
the last commit that touched the file: the report cites it, and it must be an ancestor of the commit
that wrote the results.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RULES_FILE = Path(__file__).resolve().parents[3] / "docs" / "rules.yaml"

KINDS = ("judged", "observed", "retired")
DIRECTIONS = ("increase", "decrease", "equivalent")
MODELS = ("mlp", "conv1d")
SCHEDULES = ("decaying", "constant", "restart")
MIN_SEEDS = 5
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class RulesError(ValueError):
    """A rules file that does not follow the schema (the message is one line)."""


@dataclass(frozen=True)
class Part:
    name: str
    statistic: str
    unit: str
    direction: str        # one of DIRECTIONS
    minimal_effect: float  # >= 0; the margin of an equivalence


@dataclass(frozen=True)
class Control:
    name: str
    construction: str


@dataclass(frozen=True)
class Amendment:
    round: int
    commit: str
    after_results: bool
    change: str
    reason: str | None = None
    results_seen: str | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    paper: str
    statement: str
    models: tuple[str, ...]
    schedules: tuple[str, ...]
    seeds: int
    conditions: str
    parts: tuple[Part, ...]
    control: Control | None
    history: tuple[Amendment, ...]
    validity: str | None = None
    requires: str | None = None  # what this checkout lacks to run it (then it is listed as not run)
    retired_because: str | None = None
    reference: str | None = None  # published numbers the claim is read against, with their source

    @property
    def amended_after_results(self) -> bool:
        return any(a.after_results for a in self.history)

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def text(self) -> str:
        """The rule in one paragraph, as the report prints it."""
        parts = "; ".join(
            f"{p.name}: {p.statistic}, {p.direction}"
            + (f" by at least {p.minimal_effect:g} {p.unit}" if p.direction != "equivalent"
               else f" (equivalent to 0 within +-{p.minimal_effect:g} {p.unit})")
            for p in self.parts)
        text = f"{self.conditions}. {parts}. At least {self.seeds} seeds."
        if self.validity:
            text += f" Validity: {self.validity}."
        if self.control:
            text += f" Control ({self.control.name}): {self.control.construction}."
        return text


def _fail(rule_id: str, key: str, value: Any, allowed: str) -> RulesError:
    return RulesError(f"rules file: claim {rule_id!r}: {key}={value!r} is not allowed: {allowed}")


def _text(raw: dict, rule_id: str, key: str, required: bool = True, prefix: str = "") -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(rule_id, prefix + key, value, "a non-empty string")
    return " ".join(value.split())


def _choices(raw: dict, rule_id: str, key: str, allowed: tuple[str, ...], default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    value = raw.get(key, list(default) if default is not None else None)
    if not isinstance(value, list) or not value or any(v not in allowed for v in value):
        raise _fail(rule_id, key, value, f"a non-empty list of {', '.join(allowed)}")
    return tuple(value)


def _part(raw: Any, rule_id: str, index: int) -> Part:
    key = f"parts[{index}]"
    if not isinstance(raw, dict):
        raise _fail(rule_id, key, raw, "a mapping with name, statistic, unit, direction, minimal_effect")
    direction = raw.get("direction")
    if direction not in DIRECTIONS:
        raise _fail(rule_id, f"{key}.direction", direction, f"one of {', '.join(DIRECTIONS)}")
    effect = raw.get("minimal_effect")
    if isinstance(effect, bool) or not isinstance(effect, (int, float)) or not effect >= 0:
        raise _fail(rule_id, f"{key}.minimal_effect", effect, "a number >= 0")
    if direction == "equivalent" and effect == 0:
        raise _fail(rule_id, f"{key}.minimal_effect", effect, "a margin > 0 for an equivalence")
    return Part(*(_text(raw, rule_id, k, prefix=f"{key}.") for k in ("name", "statistic", "unit")), direction, float(effect))


def _history(raw: Any, rule_id: str) -> tuple[Amendment, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(rule_id, "history", raw, "a non-empty list of {round, commit, after_results, change, ...}")
    entries = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _fail(rule_id, f"history[{i}]", entry, "a mapping")
        after = entry.get("after_results")
        if not isinstance(after, bool):
            raise _fail(rule_id, f"history[{i}].after_results", after, "true or false")
        if not isinstance(entry.get("round"), int):
            raise _fail(rule_id, f"history[{i}].round", entry.get("round"), "a whole number")
        if after and not entry.get("results_seen"):
            raise _fail(rule_id, f"history[{i}].results_seen", entry.get("results_seen"),
                        "which results were seen, required when after_results is true")
        prefix = f"history[{i}]."
        entries.append(Amendment(entry["round"], str(entry.get("commit", "")), after, _text(entry, rule_id, "change", prefix=prefix),
                                 _text(entry, rule_id, "reason", False, prefix), _text(entry, rule_id, "results_seen", False, prefix)))
    return tuple(entries)


def parse_rule(raw: Any, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise RulesError(f"rules file: rules[{index}]={raw!r} is not allowed: a mapping with id, kind, paper, ...")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise RulesError(f"rules file: rules[{index}]: id={rule_id!r} is not allowed: lower-case words joined by '-'")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(rule_id, "kind", kind, f"one of {', '.join(KINDS)}")
    seeds = raw.get("seeds")
    minimum = 0 if kind == "retired" else MIN_SEEDS
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < minimum:
        raise _fail(rule_id, "seeds", seeds, f"a whole number >= {minimum}")
    parts: tuple[Part, ...] = ()
    control = None
    if kind != "retired":
        raw_parts = raw.get("parts")
        if not isinstance(raw_parts, list) or not raw_parts:
            raise _fail(rule_id, "parts", raw_parts, "a non-empty list of parts")
        parts = tuple(_part(p, rule_id, i) for i, p in enumerate(raw_parts))
        if len({p.name for p in parts}) != len(parts):
            raise _fail(rule_id, "parts", [p.name for p in parts], "parts with distinct names")
    if kind == "judged":
        raw_control = raw.get("control")
        if not isinstance(raw_control, dict):
            raise _fail(rule_id, "control", raw_control, "a mapping {name, construction}: every judged rule has a negative control")
        control = Control(_text(raw_control, rule_id, "name"), _text(raw_control, rule_id, "construction"))
    retired_because = _text(raw, rule_id, "retired_because", required=kind == "retired")
    return Rule(
        id=rule_id, kind=kind, paper=_text(raw, rule_id, "paper"), statement=_text(raw, rule_id, "statement"),
        models=_choices(raw, rule_id, "models", MODELS),
        schedules=_choices(raw, rule_id, "schedules", SCHEDULES, default=("decaying",)),
        seeds=seeds, conditions=_text(raw, rule_id, "conditions", required=kind != "retired") or "",
        parts=parts, control=control, history=_history(raw.get("history"), rule_id),
        validity=_text(raw, rule_id, "validity", required=False), requires=_text(raw, rule_id, "requires", required=False),
        retired_because=retired_because, reference=_text(raw, rule_id, "reference", required=False),
    )


@dataclass(frozen=True)
class Rules:
    method: dict[str, Any]
    rules: tuple[Rule, ...]

    def __getitem__(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"no rule {rule_id!r} in the rules file: the ids are {', '.join(r.id for r in self.rules)}")

    @property
    def random_state(self) -> int:
        return int(self.method.get("random_state", 0))

    @property
    def n_resamples(self) -> int:
        return int(self.method.get("n_resamples", 9999))


def parse_rules(document: Any) -> Rules:
    if not isinstance(document, dict) or document.get("schema") != 1:
        raise RulesError(f"rules file: schema={document.get('schema') if isinstance(document, dict) else document!r} "
                         "is not allowed: 1")
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(f"rules file: rules={raw_rules!r} is not allowed: a non-empty list")
    rules = tuple(parse_rule(raw, i) for i, raw in enumerate(raw_rules))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise _fail(rule.id, "id", rule.id, "an id used once")
        seen.add(rule.id)
    method = document.get("method") or {}
    if not isinstance(method, dict):
        raise RulesError(f"rules file: method={method!r} is not allowed: a mapping")
    return Rules(method, rules)


def load_rules(path: Path | str = RULES_FILE) -> Rules:
    """The rules of ``path`` (default: the checkout's ``docs/rules.yaml``), validated."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RulesError(f"rules file: {path} does not exist") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RulesError(f"rules file: {path} is not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    return parse_rules(document)


def rules_commit(path: Path | str = RULES_FILE) -> str | None:
    """The last commit that touched ``path`` (full hash); ``None`` outside a git checkout or if the
    file was never committed."""
    path = Path(path).resolve()
    try:
        result = subprocess.run(["git", "log", "-1", "--format=%H", "--", path.name], cwd=path.parent,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def rules_modified(path: Path | str = RULES_FILE) -> bool:
    """Whether the working copy of ``path`` differs from its last commit (then the report's rule
    text is not the committed one, and says so)."""
    path = Path(path).resolve()
    try:
        result = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path.name], cwd=path.parent,
                                capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 1
