#!/usr/bin/env python3
"""Thin wrapper: the conformance report lives in lab/conformance.py, run as `mplab conformance`.

.venv/bin/python scripts/conformance.py [--lab conf] [--junit FILE] [-- extra pytest args]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `lab` without an install

from lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["conformance", *sys.argv[1:]]))
