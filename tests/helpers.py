"""Small helpers shared by the tests (real databases only)."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

from fbaudit.forms import unpack
from fbaudit.staging import Shipped, read_packets


def packets(project, table: str | None = None, *, schema: bool = False):
    """The staged packets: row changes, or with ``schema`` the DDL and control events only."""
    with project.connect() as db:
        return [pk for pk in read_packets(db, project.prefix, table=table)
                if (pk.operation in ("ddl", "control")) == schema]


def all_packets(project, db=None) -> str:
    """The main database's packets as a table expression (LOG_PACKET and the packet tables
    LOG_PACKET_1 / LOG_PACKET_2 the audit triggers write): use it where a test reads packets."""
    if db is not None:
        return Shipped(db, project.prefix).packets
    with project.connect() as db:
        return Shipped(db, project.prefix).packets


def fast_check(project) -> tuple[bool, int]:
    """One transfer fast check of the project's source: (anything new, tier 1 or 2)."""
    from fbaudit.transfer import SourceTransfer
    job = SourceTransfer(project.config, project.config.sources[0])
    job.open()
    try:
        return job.anything_new(), job.last_tier
    finally:
        job.close()


def packet_states(project, where: str = "", params=()) -> dict[int, int]:
    """Packets of the source by state, as the transfer's record says (0 waiting, 1 in the log
    database, 2 failed): the packets themselves are never updated. ``where``: on alias ``p``."""
    with project.connect() as db:
        shipped = Shipped(db, project.prefix)
        out = {s: n for s, n in db.query(f"SELECT STATE_, COUNT(*) FROM ({shipped.unshipped('p.ID', where)}) "
                                         f"GROUP BY STATE_", tuple(params) * shipped.parts)}
        total = db.scalar(f"SELECT COUNT(*) FROM {shipped.packets} p" + (f" WHERE {where}" if where else ""),
                          params)
        db.commit()
    done = total - sum(out.values())
    if done:
        out[1] = done
    return out


def as_fbaudit(db) -> None:
    """Mark the connection's current transaction as fbaudit's own DDL (as apply_plan does), so a test
    standing in for an older fbaudit re-creating its audit trigger adds no DDL event to the staging."""
    db.query("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_OWN_DDL', 1) FROM RDB$DATABASE")


def staged_fields(db, prefix: str = "FBA_") -> dict[int, int]:
    """Field rows each packet of the source's staging holds: its packed PAYLOAD's fields, or (a packet
    written before the packed change) its rows of LOG_1 / LOG_2 / LOG_3."""
    # A row without an ID is no packet: NOT NULL and the primary key keep fbaudit from writing one. It
    # is the shell a SIGKILLed engine can leave of an uncommitted insert (a torn page write; see
    # test_transfer.kill_whole_engine_process), which the transfer, reading by index, never sees.
    counts = {pid: len(unpack(payload)) for pid, payload in
              db.query(f"SELECT ID, PAYLOAD FROM {Shipped(db, prefix).packets} p WHERE ID IS NOT NULL",
                       whole_blobs=True)}
    for dt in (1, 2, 3):
        for pid, n in db.query(f"SELECT PACKET, COUNT(*) FROM {prefix}LOG_{dt} GROUP BY PACKET"):
            counts[pid] = counts.get(pid, 0) + n
    db.commit()
    return counts


def run_sql(project, statements, params=None, *, user_spec=None):
    """Run DML statements in one transaction on the main database."""
    with project.connect(user_spec) as db:
        cur = db.con.cursor()
        for i, s in enumerate(statements):
            cur.execute(s, (params or {}).get(i, ()))
            if s.lstrip().upper().startswith("SELECT"):
                cur.fetchall()  # a SELECT's expressions run when its row is fetched
        db.con.commit()


@contextmanager
def running_server(app):
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not srv.started:
        assert thread.is_alive() and time.monotonic() - t0 < 20, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


def http_call(base: str, path: str, *, token: str | None, method: str = "GET", body=None, timeout: float = 60,
              **params):
    """One request through real HTTP: (status, decoded JSON answer). ``body`` is sent as JSON
    (bytes as they are); ``token`` None sends none."""
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
