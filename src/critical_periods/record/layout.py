"""The run folder's layout: every file and folder name a run writes, in one place, so the trainer,
the resume, branching, W&B and the analysis agree on where things are.

    <run dir>/
      metrics.jsonl          one JSON object per logged step (see ``record.metrics``)
      summary.json           the run's status and final numbers (see ``record.summary``)
      stiffness.jsonl        class x class stiffness matrices (probes with stiffness)
      representations/       the probe set's layer outputs at chosen epochs (probes with CKA)
      checkpoints/last.ckpt  what an interrupted run resumes from
      wandb/                 the W&B run
      .lock                  held by the process that owns the folder
"""

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
# One JSON object per saved stiffness matrix: {"step": ..., "epoch": ..., "matrix": [[...], ...]} (NaN as null).
STIFFNESS_FILE = "stiffness.jsonl"
REPRESENTATIONS_DIR = "representations"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last"  # file stem; written by callbacks.checkpoint.ResumeCheckpoint
LOCK_FILE = ".lock"
WANDB_DIR = "wandb"
# Inside a sweep folder: the branch points its jobs share (see ``sweep``); the analysis skips it.
BRANCH_STORE_DIR = ".branches"
# Every JSON-lines file of a run: a torn last line in any of them is trimmed on resume.
JSONL_FILES = (METRICS_FILE, STIFFNESS_FILE)
