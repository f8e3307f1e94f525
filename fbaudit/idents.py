"""Firebird identifiers: the one place that quotes names for SQL text."""
from __future__ import annotations

import re

from .errors import CatalogError

# Reserved words of Firebird 3.0, 4.0 and 5.0 (union; from the Language
# Reference's "Reserved words" appendix). A name in this set is always quoted.
RESERVED = frozenset("""
ADD ADMIN ALL ALTER AND ANY AS AT AVG BEGIN BETWEEN BIGINT BINARY BIT_LENGTH BLOB BOOLEAN BOTH BY
CASE CAST CHAR CHAR_LENGTH CHARACTER CHARACTER_LENGTH CHECK CLOSE COLLATE COLUMN COMMENT COMMIT
CONNECT CONSTRAINT CORR COUNT COVAR_POP COVAR_SAMP CREATE CROSS CURRENT CURRENT_CONNECTION
CURRENT_DATE CURRENT_ROLE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_TRANSACTION CURRENT_USER CURSOR
DATE DAY DEC DECFLOAT DECIMAL DECLARE DEFAULT DELETE DELETING DETERMINISTIC DISCONNECT DISTINCT
DOUBLE DROP ELSE END ESCAPE EXECUTE EXISTS EXTERNAL EXTRACT FALSE FETCH FILTER FLOAT FOR FOREIGN
FROM FULL FUNCTION GDSCODE GLOBAL GRANT GROUP HAVING HOUR IN INDEX INNER INSENSITIVE INSERT
INSERTING INT INT128 INTEGER INTO IS JOIN LAG LATERAL LEAD LEADING LEFT LIKE LOCAL LOCALTIME LOCALTIMESTAMP
LONG LOWER MAX MERGE MIN MINUTE MONTH NATIONAL NATURAL NCHAR NO NOT NULL NUMERIC OCTET_LENGTH OF
OFFSET ON ONLY OPEN OR ORDER OUTER OVER PARAMETER PLAN POSITION POST_EVENT PRECISION PRIMARY
PROCEDURE PUBLISHATION PUBLICATION RDB$DB_KEY RDB$ERROR RDB$GET_CONTEXT RDB$GET_TRANSACTION_CN
RDB$RECORD_VERSION RDB$RESET_CONTEXT RDB$ROLE_IN_USE RDB$SET_CONTEXT RDB$SYSTEM_PRIVILEGE REAL RECORD_VERSION
RECREATE RECURSIVE REFERENCES REGR_AVGX REGR_AVGY REGR_COUNT REGR_INTERCEPT REGR_R2 REGR_SLOPE
REGR_SXX REGR_SXY REGR_SYY RELEASE RESETTING RETURN RETURNING_VALUES RETURNS REVOKE RIGHT
ROLLBACK ROW ROWS ROW_COUNT SAVEPOINT SCHEMA SCROLL SECOND SELECT SENSITIVE SET SIMILAR SMALLINT SOME
SQLCODE SQLSTATE START STDDEV_POP STDDEV_SAMP SUM TABLE THEN TIME TIMESTAMP TIMEZONE_HOUR
TIMEZONE_MINUTE TO TRAILING TRIGGER TRIM TRUE UNBOUNDED UNION UNIQUE UNKNOWN UPDATE UPDATING UPPER
USER USING VALUE VALUES VAR_POP VAR_SAMP VARBINARY VARCHAR VARIABLE VARYING VIEW WHEN WHERE WHILE
WINDOW WITH WITHOUT YEAR
""".split())

_PLAIN = re.compile(r"^[A-Z][A-Z0-9$_]*$")
_BARE = re.compile(r"[A-Za-z0-9$_]*")


def quote_ident(name: str) -> str:
    """Return ``name`` as it must appear in SQL text.

    Names are stored in Firebird's system tables exactly (unquoted names are
    upper case there). A name is written bare only when Firebird would read
    the bare form back as the same name: it starts with A–Z, holds only
    ``A-Z 0-9 $ _`` and is not a reserved word. Everything else is quoted,
    with embedded double quotes doubled.
    """
    if not name:
        raise CatalogError("An empty name cannot be used as a Firebird identifier.")
    if _PLAIN.match(name) and name not in RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def ident_end(sql: str, start: int) -> int:
    """Where the identifier written at ``sql[start]`` (as quote_ident writes it) ends: a quoted
    name runs to its closing quote (doubled quotes inside), a bare one to its last name character."""
    if sql.startswith('"', start):
        i = start + 1
        while True:
            i = sql.index('"', i)
            if not sql.startswith('""', i):
                return i + 1
            i += 2
    return _BARE.match(sql, start).end()


def normalize_name(name: str) -> str:
    """Turn a name as a user typed it into the stored form.

    ``customer`` → ``CUSTOMER`` (unquoted names are case-insensitive);
    ``"Customer"`` → ``Customer`` (quoted names are exact).
    """
    name = name.strip()
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        return name[1:-1].replace('""', '"')
    if _PLAIN.match(name.upper()):
        return name.upper()
    return name


def check_length(name: str, *, major_version: int, what: str) -> None:
    """Refuse a name longer than the server allows (31 bytes in 3.0, 63 characters in 4.0+)."""
    if major_version < 4:
        if len(name.encode("utf-8")) > 31:
            raise CatalogError(
                f"The {what} name {name!r} is {len(name.encode('utf-8'))} bytes long; "
                "Firebird 3.0 allows 31 bytes. Choose a shorter prefix or name."
            )
    elif len(name) > 63:
        raise CatalogError(
            f"The {what} name {name!r} is {len(name)} characters long; "
            f"Firebird {major_version} allows 63. Choose a shorter prefix or name."
        )
