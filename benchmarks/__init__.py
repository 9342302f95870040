"""Benchmarks of the embedding columns, trainer and statistics component."""
