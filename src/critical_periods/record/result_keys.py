"""The one list of config keys that change a run's result, and what follows from it.

It decides three things that must agree:

* a multirun job's folder name (Hydra's ``override_dirname``): only result keys name a folder, so
  ``conf/train.yaml`` excludes every other key (``tests/test_reliability.py`` checks the two agree);
* whether a folder may be resumed (:func:`differing_keys`): the same result keys, or refuse;
* the analysis' conditions (``analysis.runs``): result keys that vary, besides its own axes.

A key is a result key when it, or a dotted prefix of it, is in ``RESULT_KEYS`` and neither it nor a
prefix is in ``NOT_RESULT_KEYS``.

>>> is_result_key("optim.lr"), is_result_key("checkpoint.min_seconds"), is_result_key("data.source.root")
(True, False, False)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Everything that decides the numbers a run records (a probe setting changes the probe metrics).
RESULT_KEYS = ("seed", "data", "model", "deficit", "optim", "schedule", "probes", "trainer.precision",
               "trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches")
# Inside those: where the data is read from, not what it is.
NOT_RESULT_KEYS = ("data.source.root", "data.source.download")


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def is_result_key(key: str) -> bool:
    """Whether the dotted config ``key`` (or a config group name) changes a run's result."""
    prefixes = _prefixes(key)
    return any(p in RESULT_KEYS for p in prefixes) and not any(p in NOT_RESULT_KEYS for p in prefixes)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b": value}`` (lists stay whole; an empty dict is a value).

    >>> flatten({"a": {"b": 1, "c": [2]}, "d": {}})
    {'a.b': 1, 'a.c': [2], 'd': {}}
    """
    if not isinstance(tree, dict) or (not tree and prefix):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def result_config(config: dict[str, Any]) -> dict[str, Any]:
    """The result keys of a resolved config, flat."""
    return {key: value for key, value in flatten(config).items() if is_result_key(key)}


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The result keys whose values differ between two resolved configs, sorted."""
    a, b = result_config(old), result_config(new)
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


# Probe settings change the probe metrics only, never the training numbers (analysis.runs does not
# make them a condition either).
PROBE_KEYS = ("probes",)


def folder_name_excludes(keys: Iterable[str]) -> list[str]:
    """Of the config ``keys`` a multirun's jobs set, those left out of the job folders' names: every
    key that is not a result key, and the probe keys (every probe key in a name would pass the
    255-character limit of a folder name). The resume check still compares probe keys, so a folder
    never mixes two probe settings.

    >>> folder_name_excludes(["threads", "probes.probe_size", "optim.lr", "logger"])
    ['logger', 'probes.probe_size', 'threads']
    """
    return sorted(key for key in keys if not is_result_key(key) or _prefixes(key)[0] in PROBE_KEYS)
