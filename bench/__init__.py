"""mplab benchmarks: `make bench` (python -m bench) writes reports/bench/."""
