#!/usr/bin/env python3
"""Instructions the audit trigger costs per row, counted by valgrind (callgrind), not timed.

On a shared or virtual machine the trigger's CPU time per row scatters by 15-30% from one run
to the next (scripts/bench_capture.py --explore), which hides changes of a few microseconds.
Instruction counts do not scatter: this script runs the (b) workload of bench_capture.py
(an EXECUTE BLOCK loop inserting, updating 2 of 20 fields, deleting rows of BENCH) on embedded
Firebird under `valgrind --tool=callgrind`, twice per variant with a small and a large number of
rows, and reports (large - small) / (rows difference): instructions per row, the start-up of
Python and Firebird cancelled out. The trigger's cost is that minus the variant "none".

Variants:
  none          BENCH without a trigger
  fbaudit       `fbaudit init` + `fbaudit enable BENCH` (the fbaudit importable here: run with
                PYTHONPATH=<a checkout of another revision> to count that revision)
  NAME=FILE     fbaudit's objects, then the audit trigger's body replaced by FILE (as written
                by --save-body), to compare a trigger from another revision in the same run

Counts include memset and memcpy inside Firebird one instruction per byte where the C library
uses `rep stosb` / `rep movsb`: a cleared buffer counts in proportion to its size.

Usage (docs/performance.md, "An assignment costs the variable's declared size"):
  python scripts/bench_instructions.py --save-body /tmp/head.sql
  PYTHONPATH=/tmp/old python scripts/bench_instructions.py --save-body /tmp/old.sql --variants none
  python scripts/bench_instructions.py --variants none,fbaudit,old=/tmp/old.sql
  python scripts/bench_instructions.py --variants none,fbaudit,old=/tmp/old.sql --cpu 9 --large 3000
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib
from benchlib import PREFIX, say

HERE = Path(__file__).resolve().parent


def _target(argv_dir: str | None, keep: bool):
    import bench_capture as bc
    ap = argparse.ArgumentParser()
    benchlib.add_common_args(ap, dir_help="-")
    ap.add_argument("--forced-writes", default="default")
    args = ap.parse_args(["--dir", argv_dir] if argv_dir else [])
    args.keep = keep
    return bc, bc.Target(args)


def run_child(dsn: str, op: str, rows: int) -> None:
    """Inside valgrind: one EXECUTE BLOCK of ``rows`` rows of ``op`` on ``dsn``."""
    bc, target = _target(str(Path(dsn).parent), keep=True)
    con = target.connect(dsn)
    con.execute_immediate(bc.block_sql(op, 1, rows))
    con.commit()
    con.close()


def trigger_body(target, dsn: str) -> str:
    con = target.connect(dsn)
    cur = con.cursor()
    cur.execute("SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = ?", (f"{PREFIX}AUDIT_1",))
    body = cur.fetchone()[0]
    body = body.read() if hasattr(body, "read") else body
    cur.close()
    con.close()
    return body


def prepare(bc, target, name: str, body_file: str | None, log_dsn: str) -> str:
    dsn = bc.prepare_variant(target, "none" if name == "none" else "fbaudit", f"i_{name}", log_dsn)
    if body_file:
        body = Path(body_file).read_text(encoding="utf-8").strip()
        con = target.connect(dsn)
        con.execute_immediate(f"CREATE OR ALTER TRIGGER {PREFIX}AUDIT_1 FOR BENCH ACTIVE AFTER INSERT OR UPDATE "
                              "OR DELETE POSITION 32000\n" + body)
        con.commit()
        con.close()
    return dsn


def count(dsn: str, rows: int, ops: list[str]) -> dict[str, int]:
    """Instructions of one child run per operation, on a copy of ``dsn`` (the operations in
    order: the updates and deletes find the inserted rows)."""
    copy = f"{dsn[:-4]}_{rows}.fdb"
    shutil.copyfile(dsn, copy)
    out = {}
    try:
        for op in ops:
            env = dict(os.environ)
            env.pop("FBAUDIT_CLIENT_LIBRARY", None)
            env["PYTHONHASHSEED"] = "0"          # the same start-up every run: fewer instructions of noise
            res = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                                  sys.executable, str(Path(__file__).resolve()), "--child", copy, op, str(rows)],
                                 capture_output=True, text=True, env=env)
            line = next((x for x in res.stderr.splitlines() if "Collected :" in x), None)
            if res.returncode != 0 or line is None:
                raise SystemExit(f"valgrind run failed ({op}, {rows} rows):\n{res.stderr[-2000:]}")
            out[op] = int(line.split(":")[-1].strip())
    finally:
        Path(copy).unlink(missing_ok=True)
    return out


def print_table(title: str, names: list[str], ops: list[str], width: int, value, show) -> None:
    """Rows of ``show(value(name, op))`` per variant and operation, and with a variant "none" the
    trigger's own share (each number of the tuple minus none's)."""
    print(f"\n{title}")
    print(f"{'variant':12}" + "".join(f"{op:>{width}}" for op in ops) + ("   trigger only (minus none)" if "none" in names else ""))
    for name in names:
        cells = "".join(f"{show(value(name, op)):>{width}}" for op in ops)
        extra = ""
        if "none" in names and name != "none":
            extra = "   " + " ".join(f"{show(tuple(a - b for a, b in zip(value(name, op), value('none', op)))):>{width - 2}}"
                                     for op in ops)
        print(f"{name:12}{cells}{extra}")


def cpu_times(bc, target, dsns: dict[str, str], ops: list[str], args, version: str, started: float) -> int:
    """--cpu: CPU seconds of this process (the embedded engine runs in it) per operation, each
    repetition on fresh copies of the variants' databases, the variants in turn."""
    import statistics
    cpu: dict[str, dict[str, list[float]]] = {name: {op: [] for op in ops} for name in dsns}
    for rep in range(args.cpu + 1):
        for name, dsn in dsns.items():
            copy = f"{dsn[:-4]}_cpu.fdb"
            shutil.copyfile(dsn, copy)
            con = target.connect(copy)
            rows = args.small if rep == 0 else args.large          # the first round warms up
            for op in ops:
                sql = bc.block_sql(op, 1, rows)
                c0 = time.process_time()
                con.execute_immediate(sql)
                con.commit()
                if rep:
                    cpu[name][op].append((time.process_time() - c0) / rows * 1e6)
            con.close()
            Path(copy).unlink(missing_ok=True)
        if rep:
            say(f"  round {rep}/{args.cpu}")
    print_table(f"CPU us per row (Firebird {version} embedded, {args.large} rows, {args.cpu} rounds: "
                "minimum / median)", list(dsns), ops, 16,
                lambda name, op: (min(cpu[name][op]), statistics.median(cpu[name][op])),
                lambda v: f"{v[0]:6.1f} /{v[1]:6.1f}")
    print(f"total runtime {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"engine_version": version, "rows": args.large, "cpu_us": cpu,
                                               "revision": benchlib.fbaudit_revision()}, indent=2), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2], int(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="none,fbaudit", help="comma list: none, fbaudit, NAME=FILE [none,fbaudit]")
    ap.add_argument("--small", type=int, default=200, help="rows of the small run [200]")
    ap.add_argument("--large", type=int, default=3200, help="rows of the large run [3200]")
    ap.add_argument("--ops", default="insert,update,delete", help="operations [insert,update,delete]")
    ap.add_argument("--jobs", type=int, default=2, help="valgrind runs at once [2]")
    ap.add_argument("--save-body", help="write the generated trigger's body to this file and stop")
    ap.add_argument("--cpu", type=int, metavar="REPEAT",
                    help="instead of counting instructions: time the same runs (--large rows) REPEAT times "
                         "each, variants interleaved, and report the trigger's CPU per row (minimum and median)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None and not args.cpu:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.large <= args.small:
        ap.error("--large must be more than --small")
    ops = [x.strip() for x in args.ops.split(",") if x.strip()]
    variants = []
    for v in (x.strip() for x in args.variants.split(",") if x.strip()):
        name, _, path = v.partition("=")
        if name in ("none", "fbaudit") and path or name not in ("none", "fbaudit") and not path:
            ap.error(f"variant {v!r}: none, fbaudit or NAME=FILE")
        if path and not Path(path).is_file():
            ap.error(f"variant {v!r}: no file {path}")
        variants.append((name, path or None))
    started = time.perf_counter()
    bc, target = _target(None, keep=False)
    bc.CPU = bc.CpuClock(target)
    try:
        log_dsn = target.create("log")
        if args.save_body:
            dsn = prepare(bc, target, "fbaudit", None, log_dsn)
            Path(args.save_body).write_text(trigger_body(target, dsn), encoding="utf-8")
            say(f"wrote the trigger's body to {args.save_body}")
            return 0
        con = target.connect(log_dsn)
        version = bc.engine_version(con)[0]
        con.close()
        dsns = {name: prepare(bc, target, name, path, log_dsn) for name, path in variants}
        if args.cpu:
            return cpu_times(bc, target, dsns, ops, args, version, started)
        say(f"Firebird {version} embedded; {len(dsns)} variants x 2 sizes under valgrind, {args.jobs} at a time")
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            jobs = {(name, rows): pool.submit(count, dsn, rows, ops)
                    for name, dsn in dsns.items() for rows in (args.small, args.large)}
            raw = {k: f.result() for k, f in jobs.items()}
    finally:
        target.cleanup()
    n = args.large - args.small
    per_row = {name: {op: (raw[(name, args.large)][op] - raw[(name, args.small)][op]) / n for op in ops}
               for name in dsns}
    print_table(f"Instructions per row (callgrind, Firebird {version} embedded, {args.large} - {args.small} rows)",
                list(dsns), ops, 12, lambda name, op: (per_row[name][op],), lambda v: f"{v[0]:,.0f}")
    print(f"total runtime {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"engine_version": version, "small": args.small, "large": args.large,
                                               "per_row": per_row, "raw": {f"{k[0]}@{k[1]}": v for k, v in raw.items()},
                                               "revision": benchlib.fbaudit_revision()}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
