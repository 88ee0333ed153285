"""The checkers: invariants read the trace online; causality and history tables read it afterwards."""
