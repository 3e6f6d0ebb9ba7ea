# Registers the config schema (conf/train.yaml's defaults name it) with Hydra's ConfigStore, so every
# way of composing the config (the commands, the tests, a notebook) finds it.
from critical_periods.config import schema as _schema  # noqa: E402,F401

# Registers the resolvers conf/ uses, here so that every process running a job or --help has them:
# hydra.output_subdir and the job log file (a finished job's folder is left alone on a re-run), and
# the config groups --help lists.
from critical_periods import help_groups as _help_groups  # noqa: F401
from critical_periods import job_files as _job_files  # noqa: F401
