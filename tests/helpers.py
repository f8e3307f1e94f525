"""Small helpers shared by the tests (real databases only)."""
from __future__ import annotations

from fbaudit.staging import read_packets


def packets(project, table: str | None = None):
    with project.connect() as db:
        return read_packets(db, project.prefix, table=table)


def run_sql(project, statements, params=None, *, user_spec=None):
    """Run DML statements in one transaction on the main database."""
    with project.connect(user_spec) as db:
        cur = db.con.cursor()
        for i, s in enumerate(statements):
            cur.execute(s, (params or {}).get(i, ()))
            if s.lstrip().upper().startswith("SELECT"):
                cur.fetchall()  # a SELECT's expressions run when its row is fetched
        db.con.commit()
