"""The oracle for mxwarden's exposition parser: Python prometheus_client's parser.

    python oracle.py FILE...   ->   one JSON line per file: [[name, labels, value, ts_ms], ...]

value is a number, or "NaN" / "+Inf" / "-Inf"; ts_ms is milliseconds or null.
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def value(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            ts = None if s.timestamp is None else round(float(s.timestamp) * 1000)
            out.append([s.name, s.labels, value(s.value), ts])
    print(json.dumps(out))
