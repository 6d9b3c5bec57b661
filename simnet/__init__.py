"""simnet: many nodes, faults and workloads, for tests, benchmarks and demos."""
