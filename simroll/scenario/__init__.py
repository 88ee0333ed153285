"""The scenario layer: versions, RPC dispatch rules, the scenario spec, patterns, loading.

Pure: no SimPy, no I/O but reading the scenario file.
"""
