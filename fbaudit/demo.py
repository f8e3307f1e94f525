"""``fbaudit demo``: a small ERP on embedded Firebird, audited end to end."""
from __future__ import annotations

import random
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from . import capture
from . import history as history_mod
from . import rotation as rotation_mod
from . import status as status_mod
from . import transfer as transfer_mod
from .config import load_config
from .db import open_database
from .staging import read_packets

SCHEMA = [
    """CREATE TABLE CUSTOMER (
         ID INTEGER NOT NULL PRIMARY KEY,
         NAME VARCHAR(100) CHARACTER SET UTF8 NOT NULL,
         CITY VARCHAR(60) CHARACTER SET UTF8,
         CREDIT_LIMIT NUMERIC(15,2),
         IS_ACTIVE BOOLEAN DEFAULT TRUE,
         NOTE BLOB SUB_TYPE TEXT CHARACTER SET UTF8)""",
    """CREATE TABLE PRODUCT (
         SKU VARCHAR(20) CHARACTER SET UTF8 NOT NULL PRIMARY KEY,
         TITLE VARCHAR(100) CHARACTER SET UTF8 NOT NULL,
         PRICE NUMERIC(15,2) NOT NULL,
         STOCK INTEGER DEFAULT 0 NOT NULL)""",
    """CREATE TABLE ORDERS (
         ID INTEGER NOT NULL PRIMARY KEY,
         CUSTOMER_ID INTEGER NOT NULL REFERENCES CUSTOMER (ID),
         ORDER_DATE DATE NOT NULL,
         STATUS VARCHAR(12) NOT NULL,
         TOTAL NUMERIC(15,2))""",
    """CREATE TABLE ORDER_LINE (
         ORDER_ID INTEGER NOT NULL REFERENCES ORDERS (ID) ON DELETE CASCADE,
         LINE_NO SMALLINT NOT NULL,
         SKU VARCHAR(20) CHARACTER SET UTF8 NOT NULL REFERENCES PRODUCT (SKU),
         QTY INTEGER NOT NULL,
         PRICE NUMERIC(15,2) NOT NULL,
         PRIMARY KEY (ORDER_ID, LINE_NO))""",
    "CREATE SEQUENCE ORDER_ID",
]
CUSTOMERS = [("Acme GmbH", "Berlin"), ("ООО Ромашка", "Москва"), ("株式会社サクラ", "東京"),
             ("北京长城贸易", "北京"), ("Café Olé", "Lisboa"), ("Nordlys AS", "Tromsø")]
PRODUCTS = [("A-100", "Bolt M8", "0.35"), ("A-200", "Гайка М8", "0.20"), ("B-300", "ネジ 5mm", "0.15"),
            ("C-400", "螺丝刀", "7.90"), ("D-500", "Drill 18V", "89.00")]
USERS = ["anna", "борис", "佐藤", "li.wei", "marta"]

CONFIG = """\
# fbaudit demo configuration (written by `fbaudit demo`). Paths are relative to this file.
log:
  database: log.fdb
sources:
  - name: demo
    database: erp.fdb
    registry: tables.yaml
"""


def _setup(directory: Path) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    cfg_path = directory / "fbaudit.yaml"
    cfg_path.write_text(CONFIG, encoding="utf-8")
    config = load_config(cfg_path)
    with open_database(config.sources[0], create=True) as db:
        for s in SCHEMA:
            db.con.execute_immediate(s)
            db.con.commit()
        cur = db.con.cursor()
        for i, (name, city) in enumerate(CUSTOMERS, 1):
            cur.execute("INSERT INTO CUSTOMER (ID, NAME, CITY, CREDIT_LIMIT) VALUES (?, ?, ?, ?)",
                        (i, name, city, 1000 * i))
        for sku, title, price in PRODUCTS:
            cur.execute("INSERT INTO PRODUCT (SKU, TITLE, PRICE, STOCK) VALUES (?, ?, ?, 100)", (sku, title, price))
        db.con.commit()
    return cfg_path


def _worker(config, user: str, until: float, seed: int, users: int, stats: Counter, lock: threading.Lock) -> None:
    """One user at work. Each user edits its own rows (as clerks own their
    customers), so the only conflicts possible would be auditing's: there are none."""
    rnd = random.Random(seed)
    my_products = [p for i, p in enumerate(PRODUCTS) if i % users == seed % users] or PRODUCTS[:1]
    my_customers = [i for i in range(1, len(CUSTOMERS) + 1) if i % users == seed % users] or [seed + 1]
    my_orders: list[int] = []
    from decimal import Decimal
    with open_database(config.sources[0]) as db:
        con = db.con
        cur = con.cursor()
        while time.monotonic() < until:
            try:
                cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?) FROM RDB$DATABASE", (user,))
                cur.fetchall()
                action = rnd.choice(["price", "price", "customer", "order", "order", "status", "stock"])
                if action == "price":
                    sku = rnd.choice(my_products)[0]
                    cur.execute("UPDATE PRODUCT SET PRICE = PRICE * ? WHERE SKU = ?",
                                (Decimal(rnd.choice(["0.95", "1.05", "1.10"])), sku))
                elif action == "stock":
                    cur.execute("UPDATE PRODUCT SET STOCK = STOCK - 1 WHERE SKU = ?", (rnd.choice(my_products)[0],))
                elif action == "customer":
                    cid = rnd.choice(my_customers)
                    cur.execute("UPDATE CUSTOMER SET CREDIT_LIMIT = ?, NOTE = ? WHERE ID = ?",
                                (Decimal(rnd.randint(5, 50) * 100), f"limit reviewed by {user}", cid))
                elif action == "order":
                    cur.execute("SELECT NEXT VALUE FOR ORDER_ID FROM RDB$DATABASE")
                    oid = cur.fetchone()[0]
                    cur.execute("INSERT INTO ORDERS (ID, CUSTOMER_ID, ORDER_DATE, STATUS) VALUES (?, ?, CURRENT_DATE, 'new')",
                                (oid, rnd.choice(my_customers)))
                    my_orders.append(oid)
                    for line in range(1, rnd.randint(2, 4)):
                        sku, _, price = rnd.choice(PRODUCTS)
                        cur.execute("INSERT INTO ORDER_LINE (ORDER_ID, LINE_NO, SKU, QTY, PRICE) VALUES (?, ?, ?, ?, ?)",
                                    (oid, line, sku, rnd.randint(1, 9), Decimal(price)))
                    cur.execute("UPDATE ORDERS SET TOTAL = (SELECT SUM(QTY * PRICE) FROM ORDER_LINE WHERE ORDER_ID = ?) "
                                "WHERE ID = ?", (oid, oid))
                elif my_orders:
                    cur.execute("UPDATE ORDERS SET STATUS = IIF(STATUS = 'new', 'shipped', 'closed') "
                                "WHERE ID = ?", (rnd.choice(my_orders[-5:]),))
                con.commit()
                with lock:
                    stats["transactions"] += 1
            except Exception as exc:  # counted and shown: the demo must show zero
                con.rollback()
                with lock:
                    stats["errors"] += 1
                    stats[f"error: {str(exc).splitlines()[0][:80]}"] += 1
        cur.close()


def _width(text: str) -> int:
    """Columns a string takes in a terminal (CJK characters take two)."""
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    out = ""
    for ch in text:
        if _width(out + ch) > width:
            break
        out += ch
    return out + " " * (width - _width(out))


def change_text(field: str, change: dict, operation: str) -> str:
    """NAME = new (insert), NAME was old (delete), NAME: old -> new (update); NULL for no value."""
    show = lambda v: "NULL" if v is None else str(v)
    if operation == "insert":
        return f"{field} = {show(change['new'])}"
    if operation == "delete":
        return f"{field} was {show(change['old'])}"
    return f"{field}: {show(change['old'])} -> {show(change['new'])}"


def history_table(versions: list[dict], echo: Callable[[str], None], *, last: int = 10) -> None:
    """Versions (as fbaudit.history returns them) as a table."""
    echo(f"{'ver':>3}  {'time':19}  {'author':8}  {'op':6}  changes")
    if len(versions) > last:
        echo(f"{'...':>3}  ({len(versions) - last} earlier versions)")
    for v in versions[-last:]:
        ch = ", ".join(change_text(k, c, v["operation"]) for k, c in v["changes"].items())
        echo(f"{v['version']:>3}  {v['at'][:19].replace('T', ' ')}  {_pad(str(v['author']), 8)}  "
             f"{v['operation']:6}  {ch}")


def run(directory: str | Path = "data/demo", *, seconds: float = 3.0, users: int = 4,
        echo: Callable[[str], None] | None = None) -> dict:
    """Run the demo; returns a summary (printed step by step through ``echo``)."""
    say = echo or (lambda s: None)
    directory = Path(directory).resolve()
    say(f"fbaudit demo: databases in {directory}")
    cfg_path = _setup(directory)
    config = load_config(cfg_path)
    for line in capture.init(config).lines:
        say(f"  init     {line}")
    for table in ("CUSTOMER", "PRODUCT", "ORDERS", "ORDER_LINE"):
        for line in capture.enable(config, table).lines:
            say(f"  enable   {line}")
    say(f"  {users} simulated users edit for {seconds:g} s ...")
    stats: Counter = Counter()
    lock = threading.Lock()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_worker, args=(config, USERS[i % len(USERS)], until, i, users, stats, lock))
               for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open_database(config.sources[0]) as db:
        packets = read_packets(db, config.prefix)
        version = db.version
    by = Counter((p.table, p.operation) for p in packets)
    say(f"  {stats['transactions']} transactions committed, {stats['errors']} failed; "
        f"{len(packets)} changes captured on Firebird {version}:")
    for (table, op), n in sorted(by.items()):
        say(f"    {table:<11} {op:<7} {n}")
    for k, v in stats.items():
        if k.startswith("error: "):
            say(f"    {v} x {k}")
    story_id = _story(config)
    say(f"  then one customer's story: {', '.join(u for u, _, _ in STORY)} edit CUSTOMER {story_id} in turn")
    res = transfer_mod.transfer(config)
    for line in res.lines:
        say(f"  transfer {line}")
    rot = rotation_mod.rotate(config, force=True)
    for line in rot.lines + rot.warnings:
        say(f"  rotate   {line}")
    hist = history_mod.history(config, "CUSTOMER", str(story_id), limit=None)
    say("")
    say(f"History of CUSTOMER {story_id}, read from the log database:")
    history_table(hist["versions"], say)
    st = status_mod.status(config)
    say("")
    say("fbaudit status:")
    for line in st.lines[:st.lines.index("", 1) + 3] if "" in st.lines[1:] else st.lines:
        say(f"  {line}" if line else "")
    say("")
    say("Next: try")
    say(f"  fbaudit --config {cfg_path} history CUSTOMER {story_id}")
    say(f"  fbaudit --config {cfg_path} history PRODUCT A-200 --limit 5")
    say(f"  fbaudit --config {cfg_path} status")
    say(f"  fbaudit --config {cfg_path} ddl PRODUCT")
    say(f"  fbaudit --config {cfg_path} checkpoint create -d 'before my experiment'")
    say("  docs/operations.md: scheduling the transfer and the rotation on Windows or Linux")
    return {"directory": str(directory), "config": str(cfg_path), "firebird": version,
            "transactions": stats["transactions"], "failed_transactions": stats["errors"], "packets": len(packets),
            "by_table": {f"{t}.{o}": n for (t, o), n in sorted(by.items())},
            "transfer": res.data, "rotation": rot.data["sources"][0],
            "history": {"table": hist["table"], "key": str(story_id), "versions": hist["versions"],
                        "total": hist["total"]},
            "health": st.data["health"]}


# One record's life, edited by several people in turn (authors from the transaction context).
STORY = [
    ("marta", "INSERT INTO CUSTOMER (ID, NAME, CITY, CREDIT_LIMIT) VALUES (?, 'Société Générale de Café', "
              "'Paris', 2000)", ()),
    ("佐藤", "UPDATE CUSTOMER SET CREDIT_LIMIT = 5000, NOTE = '新規契約 (new contract)' WHERE ID = ?", ()),
    ("борис", "UPDATE CUSTOMER SET CITY = 'Marseille' WHERE ID = ?", ()),
    ("li.wei", "UPDATE CUSTOMER SET IS_ACTIVE = FALSE WHERE ID = ?", ()),
    ("anna", "UPDATE CUSTOMER SET IS_ACTIVE = TRUE, CREDIT_LIMIT = 4500 WHERE ID = ?", ()),
]


def _story(config) -> int:
    """Play STORY on a new customer, one transaction per person; returns its id."""
    with open_database(config.sources[0]) as db:
        cid = db.scalar("SELECT MAX(ID) + 1 FROM CUSTOMER")
        db.commit()
        for user, sql, _ in STORY:
            db.scalar("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?) FROM RDB$DATABASE", (user,))
            db.execute(sql, (cid,))
            db.commit()
    return cid
