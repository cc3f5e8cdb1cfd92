#!/usr/bin/env python3
"""Thin wrapper: the differential lives in lab/differential, run as `mplab diff`.

.venv/bin/python scripts/differential.py [--lab diff] [--keep] [--out reports] [--only KEY]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `lab` without an install

from lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["diff", *sys.argv[1:]]))
