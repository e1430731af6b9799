"""Benchmark scripts of resnet-lab (issue 8): run them with ``python -m benchmarks.<name>``; see run_cpu."""
