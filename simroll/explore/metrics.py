"""What a sweep can report per cell, by name: a module of its own so that the command line
can offer the names without importing the simulator."""

METRICS: dict[str, str] = {
    "worst_wait": "worst queue wait (s)",
    "p99_wait": "p99 queue wait (s)",
    "events": "trace events",
    "sim_time": "simulated time (s)",
    "violated_runs": "runs violating an invariant",
}
