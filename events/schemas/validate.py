"""Validates events (one JSON document a line on stdin) against events/schemas/{type}.schema.json, draft 2020-12.

Run by shared/tests/it/events.rs on what the Rust code serialises. jsonschema comes with schemathesis
(scripts/requirements-tools.txt), so the test command has it; prints one line per invalid event, exits 1 if any.
"""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator, FormatChecker

here = pathlib.Path(__file__).parent
bad = 0
for line in sys.stdin:
    if not line.strip():
        continue
    event = json.loads(line)
    schema = json.loads((here / f"{event['type']}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    for error in Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(event):
        bad += 1
        print(f"{event['type']} {event.get('id')}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
sys.exit(1 if bad else 0)
