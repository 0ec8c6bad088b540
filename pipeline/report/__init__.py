"""The report stage: results/tables.md (tables.py) and results/figures/*.png (plots.py)."""
