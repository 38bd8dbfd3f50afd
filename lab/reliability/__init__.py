"""Reliability runs (issue 8, "Measured and shown"): network faults, floods, restart and recovery,
soak. Each is a module with a `main()` that prints figures; tests/interop/test_reliability_*.py runs
short versions that assert the behaviour."""
