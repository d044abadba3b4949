"""Benchmark scenarios: one module per hot path (worklist, fetch, render, sign, dictation); see bench.harness."""
