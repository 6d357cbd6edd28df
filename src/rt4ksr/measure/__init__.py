"""Measurements that drive the library from above: inference speed, data throughput, the kernel sweep and the
multirun report. The commands on top print and save what these return."""
