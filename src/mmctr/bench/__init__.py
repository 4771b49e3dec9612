"""Efficiency benchmarks: our models and peer libraries on the same data, one subprocess each.

harness.py  the run: systems, subprocesses, repeats, aggregation, outputs (`mmctr bench`)
child.py    one system measured in its own process (possibly a peer's own interpreter)
measure.py  what is measured and how: train steps, FLOPs, AUC, batch scoring, request latency, RSS
machine.py  the machine and its matmul rate (fp32, bf16), the ceiling for achieved FLOP/s
ours.py, peers_deepctr.py, peers_fuxictr.py   one adapter per system family
report.py, plot.py   bench.md and auc_latency.png from the records
"""
