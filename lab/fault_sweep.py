"""`python -m lab.fault_sweep`: the fault-injection sweep (lab/reliability/fault_sweep.py), by
the shorter name; the same options."""
from __future__ import annotations

import sys

from lab.reliability.fault_sweep import main

if __name__ == "__main__":
    sys.exit(main())
