#!/usr/bin/env python3
"""Independent Delta Lake table reader, used by tidewater's tests.

It replays ``_delta_log`` by the Delta protocol using only pyarrow and the
standard library (deliberately not delta-rs, which tidewater writes with), so
that the tests check the tables tidewater writes against a second,
independent implementation.

Usage::

    python delta_read.py TABLE_DIR [--version N] [--log] [--all-versions]

Default output: one JSON document on stdout::

    {"version": V, "num_files": F,
     "schema": [{"name": ..., "type": ...}, ...],
     "txn": {"appId": version, ...},
     "rows": [{"col": value, ...}, ...]}

Rows are sorted by ``json.dumps(row, sort_keys=True)``. Values: integers as
JSON integers; floats as numbers (NaN and infinities as the strings "NaN",
"Infinity", "-Infinity"); strings; booleans; null; timestamps (with or
without time zone) as integer microseconds since the Unix epoch; dates as
"YYYY-MM-DD"; decimals as plain-notation strings with exactly ``scale``
fractional digits; binary as base64; structs as objects; arrays as lists;
maps as objects when their keys are strings, else as lists of [key, value].
The schema's "type" is the Delta type string (for nested types, the compact
JSON of the type).

``--log`` prints a JSON list with one entry per commit 0..V that is present
as a JSON commit file::

    {"version": v, "txn": [{"appId": ..., "version": ...}],
     "commitInfo": {...} or null, "add": [paths], "remove": [paths],
     "num_records_added": int or null}

``--all-versions`` prints a JSON list with the default output of every
version 0..V (each version replayed on its own, as ``--version v`` would);
it needs every JSON commit from 0 on.

Paths in ``--log`` are given as written in the log (URL-encoded).
``num_records_added`` is the sum of ``stats.numRecords`` over the commit's
adds, or null when any add lacks it.

Errors (not a Delta table, a missing data file, a version not found, ...)
go to stderr and the exit status is 2.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import decimal
import json
import math
import os
import re
import sys
import urllib.parse

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - reported to the caller
    sys.stderr.write(
        "error: pyarrow is missing: run scripts/test "
        "(it creates $HOME/.cache/tidewater/venv)\n"
    )
    sys.exit(3)


class ReadError(Exception):
    """An error reported to the caller on stderr with exit status 2."""


COMMIT_RE = re.compile(r"^(\d{20})\.json$")
CHECKPOINT_RE = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")


# ---------------------------------------------------------------------------
# The log
# ---------------------------------------------------------------------------


class Log:
    def __init__(self, table_dir: str):
        self.table_dir = os.path.abspath(table_dir)
        self.log_dir = os.path.join(self.table_dir, "_delta_log")
        if not os.path.isdir(self.table_dir):
            raise ReadError(f"not a Delta table: {table_dir} is not a directory")
        if not os.path.isdir(self.log_dir):
            raise ReadError(f"not a Delta table: {table_dir} has no _delta_log directory")
        self.commits: dict[int, str] = {}
        # version -> {num_parts: {part: path}}
        self.checkpoints: dict[int, dict[int, dict[int, str]]] = {}
        for name in os.listdir(self.log_dir):
            m = COMMIT_RE.match(name)
            if m:
                self.commits[int(m.group(1))] = os.path.join(self.log_dir, name)
                continue
            m = CHECKPOINT_RE.match(name)
            if m:
                v = int(m.group(1))
                if m.group(2) is None:
                    part, parts = 1, 1
                else:
                    part, parts = int(m.group(2)), int(m.group(3))
                self.checkpoints.setdefault(v, {}).setdefault(parts, {})[part] = os.path.join(
                    self.log_dir, name
                )
        if not self.commits and not self.checkpoints:
            raise ReadError(
                f"not a Delta table: {self.log_dir} holds no commit (NNNNNNNNNNNNNNNNNNNN.json) "
                "and no checkpoint"
            )

    def latest_version(self) -> int:
        candidates = list(self.commits)
        candidates += [v for v in self.checkpoints if self.complete_checkpoint(v)]
        if not candidates:
            raise ReadError(f"no complete commit or checkpoint in {self.log_dir}")
        return max(candidates)

    def complete_checkpoint(self, version: int, parts: int | None = None) -> list[str] | None:
        """The files of a complete checkpoint at `version` (with `parts` parts if given)."""
        by_parts = self.checkpoints.get(version, {})
        options = [parts] if parts is not None else sorted(by_parts)
        for n in options:
            files = by_parts.get(n, {})
            if n is not None and len(files) == n and all(i in files for i in range(1, n + 1)):
                return [files[i] for i in range(1, n + 1)]
        return None

    def last_checkpoint_hint(self) -> dict | None:
        path = os.path.join(self.log_dir, "_last_checkpoint")
        if not os.path.exists(path):
            return None
        try:
            with open(path, "r", encoding="utf-8") as f:
                hint = json.load(f)
        except (OSError, ValueError) as e:
            raise ReadError(f"cannot read {path}: {e}") from e
        if not isinstance(hint, dict) or not isinstance(hint.get("version"), int):
            raise ReadError(f"{path} has no integer 'version': {hint!r}")
        return hint

    def read_commit(self, version: int) -> list[dict]:
        path = self.commits.get(version)
        if path is None:
            raise ReadError(f"version not found: commit {version} ({version:020d}.json) is missing")
        actions = []
        with open(path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    action = json.loads(line)
                except ValueError as e:
                    raise ReadError(f"{path}:{lineno}: invalid JSON: {e}") from e
                if not isinstance(action, dict):
                    raise ReadError(f"{path}:{lineno}: an action must be a JSON object")
                actions.append(action)
        return actions

    def read_checkpoint(self, files: list[str]) -> list[dict]:
        """The actions of a checkpoint, as dicts like those of a JSON commit."""
        actions: list[dict] = []
        for path in files:
            try:
                table = pq.ParquetFile(path).read()
            except Exception as e:  # noqa: BLE001 - report any pyarrow failure
                raise ReadError(f"cannot read checkpoint {path}: {e}") from e
            for kind in ("protocol", "metaData", "txn", "add", "remove"):
                if kind not in table.column_names:
                    continue
                for value in table.column(kind).to_pylist():
                    if value is None:
                        continue
                    actions.append({kind: _checkpoint_action(value)})
        return actions


def _checkpoint_action(value):
    """Turns a checkpoint row (maps read as lists of pairs) into JSON-like dicts."""
    if isinstance(value, dict):
        return {k: _checkpoint_action(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):
            return {k: _checkpoint_action(v) for k, v in value}
        return [_checkpoint_action(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Snapshot
# ---------------------------------------------------------------------------


class Snapshot:
    def __init__(self, log: Log, version: int):
        self.log = log
        self.version = version
        self.metadata: dict | None = None
        self.protocol: dict | None = None
        self.txn: dict[str, int] = {}
        # canonical absolute path -> add action
        self.files: dict[str, dict] = {}

    def apply(self, action: dict, from_checkpoint: bool = False) -> None:
        if "add" in action and action["add"] is not None:
            add = action["add"]
            self.files[resolve_path(self.log.table_dir, add["path"])] = add
        elif "remove" in action and action["remove"] is not None:
            if not from_checkpoint:  # checkpoint removes are tombstones only
                self.files.pop(resolve_path(self.log.table_dir, action["remove"]["path"]), None)
        elif "metaData" in action and action["metaData"] is not None:
            self.metadata = action["metaData"]
        elif "protocol" in action and action["protocol"] is not None:
            self.protocol = action["protocol"]
        elif "txn" in action and action["txn"] is not None:
            txn = action["txn"]
            self.txn[txn["appId"]] = int(txn["version"])


def load_snapshot(log: Log, version: int | None) -> Snapshot:
    latest = log.latest_version()
    if version is None:
        version = latest
    if version < 0 or version > latest:
        raise ReadError(f"version not found: {version} (the table's newest version is {latest})")

    start = -1  # the last version already applied
    checkpoint_files = None
    hint = log.last_checkpoint_hint()
    if hint is not None and hint["version"] <= version:
        start = hint["version"]
        parts = hint.get("parts")
        checkpoint_files = log.complete_checkpoint(start, parts if isinstance(parts, int) else None)
        if checkpoint_files is None:
            raise ReadError(
                f"_last_checkpoint names version {start} (parts: {parts}) "
                "but that checkpoint's files are missing"
            )
    elif 0 not in log.commits:
        # The early commits were cleaned up: the newest complete checkpoint at
        # or before `version` is the only way in.
        usable = [v for v in log.checkpoints if v <= version and log.complete_checkpoint(v)]
        if not usable:
            raise ReadError(
                f"version not found: {version} (commit 0 is gone and no checkpoint at or before it)"
            )
        start = max(usable)
        checkpoint_files = log.complete_checkpoint(start)

    snap = Snapshot(log, version)
    if checkpoint_files is not None:
        for action in log.read_checkpoint(checkpoint_files):
            snap.apply(action, from_checkpoint=True)
    for v in range(start + 1, version + 1):
        for action in log.read_commit(v):
            snap.apply(action)
    if snap.metadata is None:
        raise ReadError(f"no metaData action in the log up to version {version}")
    return snap


def resolve_path(table_dir: str, path: str) -> str:
    parsed = urllib.parse.urlparse(path)
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        if parsed.scheme != "file":
            raise ReadError(f"unsupported file URI (only file:// is readable): {path}")
        return os.path.normpath(urllib.parse.unquote(parsed.path))
    return os.path.normpath(os.path.join(table_dir, urllib.parse.unquote(path)))


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def delta_type_string(t) -> str:
    if isinstance(t, str):
        return t
    return json.dumps(t, separators=(",", ":"), sort_keys=True)


def read_rows(snap: Snapshot) -> tuple[list[dict], list[dict]]:
    meta = snap.metadata
    try:
        schema = json.loads(meta["schemaString"])
    except (KeyError, TypeError, ValueError) as e:
        raise ReadError(f"metaData has no valid schemaString: {e}") from e
    fields = schema.get("fields", [])
    mapping_mode = (meta.get("configuration") or {}).get("delta.columnMapping.mode", "none")
    partition_columns = set(meta.get("partitionColumns") or [])

    columns = []  # (logical name, physical name, delta type)
    for field in fields:
        physical = field["name"]
        if mapping_mode in ("name", "id"):
            physical = (field.get("metadata") or {}).get(
                "delta.columnMapping.physicalName", physical
            )
        columns.append((field["name"], physical, field["type"]))

    rows: list[dict] = []
    for path in sorted(snap.files):
        add = snap.files[path]
        if add.get("deletionVector"):
            raise ReadError(f"deletion vectors are not supported by this reader: {add['path']}")
        if not os.path.exists(path):
            raise ReadError(
                f"missing file referenced by the log: {add['path']} (looked for {path})"
            )
        try:
            table = pq.ParquetFile(path).read()
        except Exception as e:  # noqa: BLE001
            raise ReadError(f"cannot read data file {path}: {e}") from e
        n = table.num_rows
        partition_values = add.get("partitionValues") or {}
        file_columns = []
        for name, physical, dtype in columns:
            if name in partition_columns:
                raw = partition_values.get(physical, partition_values.get(name))
                value = parse_partition_value(raw, dtype, name)
                file_columns.append([value] * n)
            elif physical in table.column_names:
                file_columns.append(chunked_to_py(table.column(physical)))
            else:  # a column added to the schema after this file was written
                file_columns.append([None] * n)
        names = [c[0] for c in columns]
        for i in range(n):
            rows.append({names[j]: file_columns[j][i] for j in range(len(names))})

    rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
    out_schema = [{"name": name, "type": delta_type_string(dtype)} for name, _, dtype in columns]
    return out_schema, rows


def float_value(x):
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def decimal_string(d: decimal.Decimal, scale: int) -> str:
    q = d.quantize(decimal.Decimal(1).scaleb(-scale)) if scale > 0 else d.quantize(decimal.Decimal(1))
    return format(q, "f")


_UNIT_TO_MICROS = {"s": ("mul", 1_000_000), "ms": ("mul", 1_000), "us": ("mul", 1), "ns": ("div", 1_000)}


def chunked_to_py(col) -> list:
    out: list = []
    for chunk in col.chunks:
        out.extend(array_to_py(chunk))
    return out


def array_to_py(arr) -> list:
    """Converts a pyarrow Array to a list of JSON-ready Python values."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return array_to_py(arr.dictionary_decode())
    if pa.types.is_timestamp(t):
        op, k = _UNIT_TO_MICROS[t.unit]
        ints = arr.cast(pa.int64()).to_pylist()
        if op == "mul":
            return [None if v is None else v * k for v in ints]
        return [None if v is None else v // k for v in ints]
    if pa.types.is_date32(t) or pa.types.is_date64(t):
        return [None if v is None else v.isoformat() for v in arr.to_pylist()]
    if pa.types.is_decimal(t):
        return [None if v is None else decimal_string(v, t.scale) for v in arr.to_pylist()]
    if pa.types.is_floating(t):
        return [float_value(v) for v in arr.to_pylist()]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) \
            or (hasattr(pa.types, "is_binary_view") and pa.types.is_binary_view(t)):
        return [None if v is None else base64.b64encode(v).decode("ascii") for v in arr.to_pylist()]
    if pa.types.is_struct(t):
        valid = arr.is_valid().to_pylist()
        children = [array_to_py(child) for child in arr.flatten()]
        names = [t.field(i).name for i in range(t.num_fields)]
        return [
            {names[j]: children[j][i] for j in range(len(names))} if valid[i] else None
            for i in range(len(arr))
        ]
    if pa.types.is_fixed_size_list(t):
        valid = arr.is_valid().to_pylist()
        values = array_to_py(arr.flatten())  # null lists contribute no values
        out, pos, n = [], 0, t.list_size
        for ok in valid:
            if ok:
                out.append(values[pos:pos + n])
                pos += n
            else:
                out.append(None)
        return out
    if pa.types.is_map(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        valid = arr.is_valid().to_pylist()
        offsets = arr.offsets.to_pylist()  # len(arr) + 1 offsets into arr.values
        base = offsets[0] if offsets else 0
        child = arr.values.slice(base, (offsets[-1] - base) if offsets else 0)
        if pa.types.is_map(t):
            keys, items = (array_to_py(child.field(0)), array_to_py(child.field(1)))
            string_keys = pa.types.is_string(t.key_type) or pa.types.is_large_string(t.key_type)
        else:
            values = array_to_py(child)
        out = []
        for i, ok in enumerate(valid):
            if not ok:
                out.append(None)
                continue
            lo, hi = offsets[i] - base, offsets[i + 1] - base
            if pa.types.is_map(t):
                pairs = list(zip(keys[lo:hi], items[lo:hi]))
                out.append(dict(pairs) if string_keys else [list(p) for p in pairs])
            else:
                out.append(values[lo:hi])
        return out
    return arr.to_pylist()


def parse_partition_value(raw, dtype, name):
    if raw is None or raw == "":
        return None  # the protocol reads an empty partition value as null, for every type
    try:
        if dtype in ("byte", "short", "integer", "long"):
            return int(raw)
        if dtype in ("float", "double"):
            return float_value(float(raw))
        if dtype == "boolean":
            return raw.lower() == "true"
        if dtype == "string":
            return raw
        if dtype == "date":
            return _dt.date.fromisoformat(raw).isoformat()
        if dtype in ("timestamp", "timestamp_ntz"):
            s = raw.strip().replace("T", " ")
            tz = _dt.timezone.utc
            if s.endswith("Z"):
                s = s[:-1]
            ts = _dt.datetime.fromisoformat(s)
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=tz)
            delta = ts - _dt.datetime(1970, 1, 1, tzinfo=tz)
            return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        m = re.fullmatch(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)", dtype)
        if m:
            return decimal_string(decimal.Decimal(raw), int(m.group(2)))
        if dtype == "binary":
            return base64.b64encode(raw.encode("latin-1")).decode("ascii")
    except (ValueError, decimal.InvalidOperation, UnicodeEncodeError) as e:
        raise ReadError(f"bad partition value {raw!r} for column {name} of type {dtype}: {e}") from e
    raise ReadError(f"unsupported partition column type {dtype!r} for column {name}")


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def read_table(table_dir: str, version: int | None) -> dict:
    log = Log(table_dir)
    snap = load_snapshot(log, version)
    schema, rows = read_rows(snap)
    return {
        "version": snap.version,
        "num_files": len(snap.files),
        "schema": schema,
        "txn": dict(sorted(snap.txn.items())),
        "rows": rows,
    }


def read_log(table_dir: str, version: int | None) -> list[dict]:
    log = Log(table_dir)
    latest = log.latest_version()
    if version is None:
        version = latest
    if version < 0 or version > latest:
        raise ReadError(f"version not found: {version} (the table's newest version is {latest})")
    out = []
    for v in sorted(x for x in log.commits if x <= version):
        txn, adds, removes, commit_info = [], [], [], None
        num_records: int | None = 0
        for action in log.read_commit(v):
            if action.get("txn") is not None:
                t = action["txn"]
                txn.append({"appId": t["appId"], "version": t["version"]})
            elif action.get("add") is not None:
                add = action["add"]
                adds.append(add["path"])
                n = None
                stats = add.get("stats")
                if isinstance(stats, str) and stats:
                    try:
                        n = json.loads(stats).get("numRecords")
                    except (ValueError, AttributeError):
                        n = None
                num_records = None if (num_records is None or not isinstance(n, int)) else num_records + n
            elif action.get("remove") is not None:
                removes.append(action["remove"]["path"])
            elif action.get("commitInfo") is not None:
                commit_info = action["commitInfo"]
        out.append(
            {
                "version": v,
                "txn": txn,
                "commitInfo": commit_info,
                "add": adds,
                "remove": removes,
                "num_records_added": num_records,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Independent Delta Lake table reader (pyarrow only).")
    parser.add_argument("table_dir", metavar="TABLE_DIR")
    parser.add_argument("--version", type=int, default=None, help="the version to read (default: newest)")
    parser.add_argument("--log", action="store_true", help="print the commits instead of the rows")
    parser.add_argument(
        "--all-versions", action="store_true", help="print the rows of every version 0..V (time travel)"
    )
    args = parser.parse_args(argv)
    try:
        if args.log:
            result = read_log(args.table_dir, args.version)
        elif args.all_versions:
            latest = Log(args.table_dir).latest_version() if args.version is None else args.version
            result = [read_table(args.table_dir, v) for v in range(0, latest + 1)]
        else:
            result = read_table(args.table_dir, args.version)
    except ReadError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    # One write: json.dump writes every token separately, which is slow for big tables.
    sys.stdout.write(json.dumps(result, allow_nan=False, ensure_ascii=False))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
