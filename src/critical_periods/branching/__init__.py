"""Exact checkpoint branching: jobs of a sweep that share their first epochs train them once.

``timeline``: when two jobs' states are equal; ``siblings``: the sweep's jobs; ``store``: branch
points on disk; ``plan``: what one job takes, saves and deletes.
"""

# The branch points' folder under the sweep folder (the analysis skips it).
STORE_DIR = ".branches"
