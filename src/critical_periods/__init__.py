# Registers the resolvers conf/train.yaml's hydra.output_subdir and job log file use (a finished job's
# .hydra/ files and log are left alone on a re-run): here, so every process that runs a job has them.
from critical_periods import job_files as _job_files  # noqa: F401
