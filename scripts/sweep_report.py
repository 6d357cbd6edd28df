"""``python scripts/sweep_report.py MULTIRUN_DIR``: the same as ``rt4ksr sweep-report MULTIRUN_DIR``."""

from rt4ksr.sweep_report import main

if __name__ == "__main__":
    main()
