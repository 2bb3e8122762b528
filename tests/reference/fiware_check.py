#!/usr/bin/env python3
"""Checks FIWARE Smart Data Models entities against the official models.

Reads NGSI-LD key-values entities, one JSON object per line, on standard
input. The models come from PyPI `pysmartdatamodels` (the Smart Data Models
programme's own package): its bundled attribute database gives each
attribute's JSON type, format, enumeration and the model's required
attributes. (Its `validate_payload` downloads schema.json from GitHub at
call time, which this machine cannot reach, so the same facts are read from
the data the package ships.) An entity fails when its type is unknown, a
required attribute is missing, an attribute is not in the model, or a value
has the wrong type, format or enumeration value.

Prints one line per entity and exits 1 if any failed.
"""

import gzip
import json
import os
import sys
from datetime import datetime

import jsonschema
import pysmartdatamodels

ASSETS = os.path.join(os.path.dirname(pysmartdatamodels.__file__), "model-assets")
SUBJECT = "dataModel.Transportation"


def model_schema(model):
    with gzip.open(os.path.join(ASSETS, "smartdatamodels.json.gz")) as f:
        rows = [
            r
            for r in json.load(f)
            if r.get("dataModel") == model and r.get("repoName") == SUBJECT
        ]
    with open(os.path.join(ASSETS, "datamodels_metadata.json")) as f:
        meta = [
            m
            for m in json.load(f)
            if m.get("dataModel") == model and m.get("subject") == SUBJECT
        ]
    if not rows or not meta:
        raise SystemExit(f"fiware_check: {model} is not in pysmartdatamodels' database")
    properties = {}
    for row in rows:
        if row.get("parentId"):
            continue  # sub-attributes of address, location, ...
        prop = {}
        if row.get("type"):
            prop["type"] = row["type"]
        if row.get("format"):
            prop["format"] = row["format"]
        if row.get("enum"):
            prop["enum"] = row["enum"]
        properties[row["property"]] = prop
    properties["type"] = {"const": model}
    return {
        "type": "object",
        "properties": properties,
        "required": meta[0]["required"],
        "additionalProperties": False,
    }


def date_time(value):
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def main():
    checker = jsonschema.FormatChecker()
    checker.checks("date-time", raises=ValueError)(date_time)
    schemas = {}
    failed = 0
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        entity = json.loads(line)
        model = entity.get("type")
        if model not in ("TrafficFlowObserved", "CrowdFlowObserved"):
            print(f"entity {number}: unexpected type {model!r}")
            failed += 1
            continue
        if model not in schemas:
            schemas[model] = model_schema(model)
        validator = jsonschema.Draft202012Validator(schemas[model], format_checker=checker)
        errors = [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in validator.iter_errors(entity)]
        if not entity.get("id", "").startswith(f"urn:ngsi-ld:{model}:"):
            errors.append(f"id {entity.get('id')!r} is not urn:ngsi-ld:{model}:...")
        if errors:
            failed += 1
            print(f"entity {number} {entity.get('id')}: INVALID: {'; '.join(errors)}")
        else:
            print(f"entity {number} {entity['id']}: valid {model}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
