"""The oracle for mxwarden's exposition parser: Python prometheus_client's own parsers.

Reads a JSON list of jobs on stdin, each {"format": "text" | "openmetrics", "text": PAGE}, and
writes one JSON list of verdicts, in order: {"ok": [[name, [[key, value], ...], repr(value),
timestamp], ...]} with the samples as prometheus_client reads them, or {"err": "Type: message"}
when it refuses the page. A timestamp is null, ["s", repr(seconds)] for the 0.0.4 parser's
float, or ["ns", sec, nsec] for an OpenMetrics Timestamp; values are Python's repr, so nothing
is rounded on the way. Used by tests/it/expo_oracle.rs, with prometheus_client from
scripts/install-test-deps.sh (venv-tools).
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as text004


def timestamp(t):
    if t is None:
        return None
    if hasattr(t, "nsec"):
        return ["ns", t.sec, t.nsec]
    return ["s", repr(float(t))]


out = []
for job in json.load(sys.stdin):
    parser = openmetrics if job["format"] == "openmetrics" else text004
    try:
        rows = []
        for family in parser(job["text"]):
            for s in family.samples:
                labels = [[k, v] for k, v in s.labels.items()]
                rows.append([s.name, labels, repr(float(s.value)), timestamp(s.timestamp)])
        out.append({"ok": rows})
    except Exception as e:
        out.append({"err": "%s: %s" % (type(e).__name__, e)})
json.dump(out, sys.stdout)
