"""`python -m job`, the same as the `job` console script."""

from job.cli import main

main()
