#!/usr/bin/env python3
"""onnxruntime's per-row inference time on the rows `modelbus bench` uses.

usage: bench_ort.py MODEL.onnx ROWS.f32 WIDTH BATCH
Prints {"us_per_row": ..., "rows_per_s": ...}. Single-threaded session (one
core, like the worker), timed over at least 2 s after a warm-up pass.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

model, rows_path, width, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = np.fromfile(rows_path, dtype=np.float32).reshape(-1, width)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]
for b in batches:
    sess.run(None, {name: b})
start = time.perf_counter()
passes = 0
while time.perf_counter() - start < 2.0 or passes < 3:
    for b in batches:
        sess.run(None, {name: b})
    passes += 1
secs = time.perf_counter() - start
n = len(rows) * passes
print(json.dumps({"us_per_row": secs * 1e6 / n, "rows_per_s": n / secs}))
