

# Registers the config schema (conf/train.yaml's defaults name it) with Hydra's ConfigStore, so every
# way of composing the config (the commands, the tests, a notebook) finds it.
from critical_periods.config import schema as _schema  # noqa: E402,F401
