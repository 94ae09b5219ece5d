"""Simulated field devices (readers and sensors) for the demo, tests and benchmarks."""
