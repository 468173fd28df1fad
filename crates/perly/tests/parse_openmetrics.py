"""Reads an OpenMetrics text exposition on stdin and prints its families as
JSON, using the Prometheus project's own parser (prometheus_client, pinned
in requirements.txt beside this file), which rejects anything that is not
valid OpenMetrics: a missing `# EOF`, a counter sample without `_total`,
histogram buckets out of order or without `+Inf`, a label value that is
not escaped, a family declared twice...

Output: [{"name", "type", "unit", "help", "samples": [{"name", "labels",
"value"}]}]. A parse error exits with 1 and the parser's message.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def number(v):
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return v


def main():
    text = sys.stdin.read()
    try:
        families = [
            {
                "name": f.name,
                "type": f.type,
                "unit": f.unit,
                "help": f.documentation,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": number(s.value)}
                    for s in f.samples
                ],
            }
            for f in text_string_to_metric_families(text)
        ]
    except Exception as e:  # the parser raises ValueError and friends
        print(f"not valid OpenMetrics: {e!r}", file=sys.stderr)
        sys.exit(1)
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
