"""Exploration: search (fuzz), safety matrix, sweeps, and the executors that run them in parallel. Draws nothing."""
