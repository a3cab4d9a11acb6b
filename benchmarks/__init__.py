"""Speed and memory benchmarks (never part of the test run): python -m benchmarks.bench_estimators."""
