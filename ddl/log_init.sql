-- Objects in the log database, created by `fbaudit init` (docs/transfer.md).
-- {{P}} is the configured prefix. Every row is keyed by the source it came
-- from: many main databases ship into one log database.

-- object: TABLE SOURCES
-- One row per main database. The transfer locks its source's row for the
-- length of a batch, so two transfers of one source never overlap.
CREATE TABLE {{P}}SOURCES (
  ID INTEGER NOT NULL,
  NAME VARCHAR(63) CHARACTER SET UTF8 NOT NULL,
  DATABASE_DSN VARCHAR(1000) CHARACTER SET UTF8 NOT NULL,
  ADDED_AT TIMESTAMP NOT NULL,
  LAST_TRANSFER_AT TIMESTAMP,
  LAST_PACKET_ID BIGINT,
  PACKETS BIGINT DEFAULT 0 NOT NULL,
  FIELD_ROWS BIGINT DEFAULT 0 NOT NULL,
  DICT_FINGERPRINT VARCHAR(200) CHARACTER SET UTF8,
  CONSTRAINT {{P}}SOURCES_PK PRIMARY KEY (ID),
  CONSTRAINT {{P}}SOURCES_NAME UNIQUE (NAME)
)
^
-- object: TABLE LOG_PACKET
-- The article's LOG_PACKET, one row per changed record. The primary key
-- (SOURCE_ID, PACKET_ID) is what makes the transfer exactly-once: a packet
-- already here is never inserted again. KEY_HASH = HASH(RECORD_KEY) keeps
-- the history index short whatever the key length. LOAD_TX is the log
-- transaction that inserted the packet: BLOB_INS keeps only field rows of
-- packets inserted by its own transaction. VERSION_NO is the packet's number
-- in its record's history (1, 2, 3 ... in packet order), set by PACKETS_INS:
-- stable across pruning, and the newest one is the number of versions.
CREATE TABLE {{P}}LOG_PACKET (
  SOURCE_ID INTEGER NOT NULL,
  PACKET_ID BIGINT NOT NULL,
  CREATED_AT TIMESTAMP NOT NULL,
  OPERATION SMALLINT NOT NULL,
  NUM_TABLE INTEGER NOT NULL,
  RECORD_KEY VARCHAR(1000) CHARACTER SET UTF8,
  KEY_HASH BIGINT,
  AUTHOR VARCHAR(255) CHARACTER SET UTF8,
  DB_USER VARCHAR(63) CHARACTER SET UTF8,
  CLIENT_ADDRESS VARCHAR(255) CHARACTER SET UTF8,
  TRANSACTION_ID BIGINT,
  CHANGE_COMMENT VARCHAR(255) CHARACTER SET UTF8,
  TRANSFERRED_AT TIMESTAMP NOT NULL,
  LOAD_TX BIGINT NOT NULL,
  VERSION_NO BIGINT,
  CONSTRAINT {{P}}LOG_PACKET_PK PRIMARY KEY (SOURCE_ID, PACKET_ID)
)
^
-- object: COLUMN LOG_PACKET.VERSION_NO
-- A log database made by fbaudit before version numbers: `fbaudit init` adds
-- the column, then numbers the packets already there (objects.number_versions).
ALTER TABLE {{P}}LOG_PACKET ADD VERSION_NO BIGINT
^
-- object: INDEX LOG_PACKET_KEY
-- "History of one record": equality on the first three columns, packets in order.
CREATE INDEX {{P}}LOG_PACKET_KEY ON {{P}}LOG_PACKET (SOURCE_ID, NUM_TABLE, KEY_HASH, PACKET_ID)
^
-- object: INDEX LOG_PACKET_DESC
-- The same, newest first: the first page of a long history without sorting it
-- (10,000 versions: 54 ms -> 0.8 ms, scripts/bench_api.py).
CREATE DESCENDING INDEX {{P}}LOG_PACKET_DESC ON {{P}}LOG_PACKET (SOURCE_ID, NUM_TABLE, KEY_HASH, PACKET_ID)
^
-- object: INDEX LOG_PACKET_LAST
-- Newest packets of a source (the admin API's list, any filter): a page and its capped count
-- walk this instead of sorting every match (1M packets: 0.75 s -> 2 ms, scripts/bench_api.py).
CREATE DESCENDING INDEX {{P}}LOG_PACKET_LAST ON {{P}}LOG_PACKET (SOURCE_ID, PACKET_ID)
^
-- object: INDEX LOG_PACKET_DDL
-- Schema events (table number 0, docs/schema-changes.md) newest first: `fbaudit schema-log` reads a
-- page of them without walking every packet of the source.
CREATE DESCENDING INDEX {{P}}LOG_PACKET_DDL ON {{P}}LOG_PACKET (SOURCE_ID, NUM_TABLE, PACKET_ID)
^
-- object: INDEX LOG_PACKET_TX
-- A source transaction's packets, and transactions newest first: `fbaudit transactions` groups
-- along it and stops after a page (1M packets: 2-3 ms), `fbaudit transaction TX` reads one.
CREATE DESCENDING INDEX {{P}}LOG_PACKET_TX ON {{P}}LOG_PACKET (SOURCE_ID, TRANSACTION_ID)
^
-- object: INDEX LOG_PACKET_TIME
-- Time ranges and pruning.
CREATE INDEX {{P}}LOG_PACKET_TIME ON {{P}}LOG_PACKET (CREATED_AT)
^
-- object: TABLE LOG
-- The article's LOG, one row per changed field (values as bytes in canonical form).
CREATE TABLE {{P}}LOG (
  SOURCE_ID INTEGER NOT NULL,
  PACKET_ID BIGINT NOT NULL,
  NUM_POLE INTEGER NOT NULL,
  BLOB_OLD BLOB SUB_TYPE BINARY,
  BLOB_NEW BLOB SUB_TYPE BINARY,
  CONSTRAINT {{P}}LOG_PK PRIMARY KEY (SOURCE_ID, PACKET_ID, NUM_POLE)
)
^
-- object: INDEX LOG_NEW_VALUE
-- "Who set PRICE to 0?": `fbaudit search --field F --value V` (and /api/versions?field=&value=) finds
-- the field rows by the first 64 bytes of their new value, then checks the whole value. An expression
-- index: the LOG table and the transfer's INSERT stay as they are (docs/versions.md "Search").
CREATE INDEX {{P}}LOG_NEW_VALUE ON {{P}}LOG COMPUTED BY (CAST(SUBSTRING(BLOB_NEW FROM 1 FOR 64) AS VARCHAR(64) CHARACTER SET OCTETS))
^
-- object: INDEX LOG_OLD_VALUE
-- The same for the value before (`--old`, `--either`).
CREATE INDEX {{P}}LOG_OLD_VALUE ON {{P}}LOG COMPUTED BY (CAST(SUBSTRING(BLOB_OLD FROM 1 FOR 64) AS VARCHAR(64) CHARACTER SET OCTETS))
^
-- object: TABLE DICT_TABLES
-- Per-source name dictionary, copied from the source's LOG_TABLES. Rows are
-- only added or updated, never deleted: old history keeps its names.
CREATE TABLE {{P}}DICT_TABLES (
  SOURCE_ID INTEGER NOT NULL,
  NUM_TABLE INTEGER NOT NULL,
  TABLE_NAME VARCHAR(63) CHARACTER SET UTF8 NOT NULL,
  KEY_COLUMNS VARCHAR(2000) CHARACTER SET UTF8,
  AUTHOR_COLUMN VARCHAR(63) CHARACTER SET UTF8,
  ENABLED SMALLINT DEFAULT 1 NOT NULL,
  CONSTRAINT {{P}}DICT_TABLES_PK PRIMARY KEY (SOURCE_ID, NUM_TABLE)
)
^
-- object: TABLE DICT_FIELDS
CREATE TABLE {{P}}DICT_FIELDS (
  SOURCE_ID INTEGER NOT NULL,
  NUM_TABLE INTEGER NOT NULL,
  NUM_POLE INTEGER NOT NULL,
  FIELD_NAME VARCHAR(63) CHARACTER SET UTF8 NOT NULL,
  FIELD_TYPE VARCHAR(100) CHARACTER SET UTF8 NOT NULL,
  FIELD_KIND VARCHAR(10) CHARACTER SET UTF8 NOT NULL,
  RETIRED SMALLINT DEFAULT 0 NOT NULL,
  CONSTRAINT {{P}}DICT_FIELDS_PK PRIMARY KEY (SOURCE_ID, NUM_TABLE, NUM_POLE)
)
^
-- object: TABLE TRANSFER_RUNS
-- The last transfer run of each source (one row per source, rewritten by
-- every run, in the log database so that the fast check never writes to
-- the main database): what `fbaudit status` shows as "last transfer".
-- OUTCOME: shipped, some_failed (packets that failed this run), nothing_new,
-- busy or failed (the run); LAST_OK_AT is the last run that did not fail.
CREATE TABLE {{P}}TRANSFER_RUNS (
  SOURCE_NAME VARCHAR(63) CHARACTER SET UTF8 NOT NULL,
  RUN_AT TIMESTAMP NOT NULL,
  OUTCOME VARCHAR(12) CHARACTER SET UTF8 NOT NULL,
  PACKETS BIGINT DEFAULT 0 NOT NULL,
  FAILED_PACKETS INTEGER DEFAULT 0 NOT NULL,
  SECONDS DOUBLE PRECISION,
  MESSAGE VARCHAR(1000) CHARACTER SET UTF8,
  LAST_OK_AT TIMESTAMP,
  CONSTRAINT {{P}}TRANSFER_RUNS_PK PRIMARY KEY (SOURCE_NAME)
)
^
-- object: PROCEDURE PACKETS_INS
-- Step one of a batch: the log database pulls the packets LO..HI of the
-- source itself (EXECUTE STATEMENT ... ON EXTERNAL; the transfer asks only for
-- ids it has not shipped; from the source's three packet tables: LOG_PACKET,
-- and LOG_PACKET_1 / LOG_PACKET_2, which the audit triggers write; each read in
-- id order by its primary key, one after the other: no sort of the wide rows.
-- A packet of one record that arrives before an older one of another table is
-- numbered right all the same, see VERSION_NO below) and inserts those it does not have yet, with
-- LOAD_TX = this transaction. Returns every packet it saw (NEW_ = 1 inserted
-- now, 0 already here, 2 an id reused for another change): the first two are
-- exactly the ones now in the log.
-- VERSION_NO: one more than the record's packet just before this one (one
-- probe of the descending index). A packet older than some already here (a
-- baseline, `fbaudit enable --baseline`, shipped after later changes) moves
-- those up by one, so the numbers always follow the packet order.
-- The fields of a packet arrive packed in its PAYLOAD (docs/capture.md "The
-- packed change"): a packet inserted now gets its LOG rows here, one per
-- field, and FIELDS_ says how many. A packet written by an fbaudit before the
-- packed change has no PAYLOAD (FIELDS_ NULL): its field rows are in LOG_1 /
-- LOG_2, which BLOB_INS copies. Payloads up to 8,000 bytes travel as VARCHAR
-- inside the fetched row, longer ones as a BLOB.
CREATE OR ALTER PROCEDURE {{P}}PACKETS_INS (
  SOURCE_ID INTEGER, LO BIGINT, HI BIGINT,
  BASE_ VARCHAR(1000) CHARACTER SET UTF8, USER_ VARCHAR(63) CHARACTER SET UTF8,
  PASS_ VARCHAR(255) CHARACTER SET UTF8, ROLE_ VARCHAR(63) CHARACTER SET UTF8)
RETURNS (PACKET_ID BIGINT, DATA_TABLE SMALLINT, NEW_ SMALLINT, FIELDS_ INTEGER)
AS
  DECLARE created_ TIMESTAMP;
  DECLARE op_ SMALLINT;
  DECLARE num_table_ INTEGER;
  DECLARE key_ VARCHAR(1000) CHARACTER SET UTF8;
  DECLARE author_ VARCHAR(255) CHARACTER SET UTF8;
  DECLARE user_name_ VARCHAR(63) CHARACTER SET UTF8;
  DECLARE address_ VARCHAR(255) CHARACTER SET UTF8;
  DECLARE txn_ BIGINT;
  DECLARE comment_ VARCHAR(255) CHARACTER SET UTF8;
  DECLARE tx_ BIGINT;
  DECLARE hash_ BIGINT;
  DECLARE prev_ BIGINT;
  DECLARE v_ VARCHAR(8000) CHARACTER SET OCTETS;
  DECLARE b_ BLOB SUB_TYPE BINARY;
  DECLARE pos_ INTEGER;
  DECLARE end_ INTEGER;
  DECLARE semi_ INTEGER;
  DECLARE c1_ INTEGER;
  DECLARE c2_ INTEGER;
  DECLARE f_ INTEGER;
  DECLARE lo_ INTEGER;
  DECLARE ln_ INTEGER;
BEGIN
  tx_ = CURRENT_TRANSACTION;
  FOR EXECUTE STATEMENT (
        'SELECT ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, '
        || 'TRANSACTION_ID, CHANGE_COMMENT, '
        || 'IIF(OCTET_LENGTH(PAYLOAD) <= 8000, CAST(PAYLOAD AS VARCHAR(8000) CHARACTER SET OCTETS), NULL), '
        || 'IIF(OCTET_LENGTH(PAYLOAD) > 8000, PAYLOAD, NULL) '
        || 'FROM (SELECT ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD FROM {{P}}LOG_PACKET WHERE ID BETWEEN :lo AND :hi ORDER BY ID) P0 '
        || 'UNION ALL SELECT ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, '
        || 'TRANSACTION_ID, CHANGE_COMMENT, '
        || 'IIF(OCTET_LENGTH(PAYLOAD) <= 8000, CAST(PAYLOAD AS VARCHAR(8000) CHARACTER SET OCTETS), NULL), '
        || 'IIF(OCTET_LENGTH(PAYLOAD) > 8000, PAYLOAD, NULL) '
        || 'FROM (SELECT ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD FROM {{P}}LOG_PACKET_1 WHERE ID BETWEEN :lo AND :hi ORDER BY ID) P1 '
        || 'UNION ALL SELECT ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, '
        || 'TRANSACTION_ID, CHANGE_COMMENT, '
        || 'IIF(OCTET_LENGTH(PAYLOAD) <= 8000, CAST(PAYLOAD AS VARCHAR(8000) CHARACTER SET OCTETS), NULL), '
        || 'IIF(OCTET_LENGTH(PAYLOAD) > 8000, PAYLOAD, NULL) '
        || 'FROM (SELECT ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD FROM {{P}}LOG_PACKET_2 WHERE ID BETWEEN :lo AND :hi ORDER BY ID) P2')
      (lo := :LO, hi := :HI)
      ON EXTERNAL :BASE_ AS USER :USER_ PASSWORD :PASS_ ROLE :ROLE_
      INTO :PACKET_ID, :created_, :op_, :num_table_, :DATA_TABLE, :key_, :author_, :user_name_, :address_,
           :txn_, :comment_, :v_, :b_
  DO
  BEGIN
    NEW_ = 0;
    FIELDS_ = IIF(v_ IS NULL AND b_ IS NULL, NULL, 0);   -- no PAYLOAD: a packet of an older fbaudit
    -- Already here: the same packet (a rerun after a kill), unless the source's
    -- packet ids restarted (re-initialised or restored from a backup): then
    -- NEW_ = 2 and the transfer stops instead of taking a new change for an old one.
    IF (EXISTS (SELECT 1 FROM {{P}}LOG_PACKET WHERE SOURCE_ID = :SOURCE_ID AND PACKET_ID = :PACKET_ID
                AND (CREATED_AT IS DISTINCT FROM :created_ OR TRANSACTION_ID IS DISTINCT FROM :txn_
                     OR NUM_TABLE IS DISTINCT FROM :num_table_))) THEN
      NEW_ = 2;
    ELSE IF (NOT EXISTS (SELECT 1 FROM {{P}}LOG_PACKET WHERE SOURCE_ID = :SOURCE_ID AND PACKET_ID = :PACKET_ID)) THEN
    BEGIN
      hash_ = HASH(:key_);
      prev_ = NULL;
      IF (key_ IS NOT NULL) THEN
      BEGIN
        SELECT FIRST 1 VERSION_NO FROM {{P}}LOG_PACKET
          WHERE SOURCE_ID = :SOURCE_ID AND NUM_TABLE = :num_table_ AND KEY_HASH = :hash_
            AND PACKET_ID < :PACKET_ID AND RECORD_KEY = :key_
          ORDER BY SOURCE_ID DESC, NUM_TABLE DESC, KEY_HASH DESC, PACKET_ID DESC
          INTO :prev_;
        prev_ = COALESCE(prev_, 0) + 1;
        UPDATE {{P}}LOG_PACKET SET VERSION_NO = VERSION_NO + 1
          WHERE SOURCE_ID = :SOURCE_ID AND NUM_TABLE = :num_table_ AND KEY_HASH = :hash_
            AND PACKET_ID > :PACKET_ID AND RECORD_KEY = :key_;
      END
      INSERT INTO {{P}}LOG_PACKET (SOURCE_ID, PACKET_ID, CREATED_AT, OPERATION, NUM_TABLE, RECORD_KEY, KEY_HASH,
                                   AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT,
                                   TRANSFERRED_AT, LOAD_TX, VERSION_NO)
        VALUES (:SOURCE_ID, :PACKET_ID, :created_, :op_, :num_table_, :key_, :hash_, :author_, :user_name_,
                :address_, :txn_, :comment_, LOCALTIMESTAMP, :tx_, :prev_);
      NEW_ = 1;
      -- The packed fields: "<field>,<old length>,<new length>;" then the old and the new bytes
      -- (a length of -1: NULL, no bytes).
      IF (v_ IS NOT NULL) THEN
      BEGIN
        pos_ = 1;
        end_ = OCTET_LENGTH(v_);
        WHILE (pos_ <= end_) DO
        BEGIN
          semi_ = POSITION(';', v_, pos_);
          c1_ = POSITION(',', v_, pos_);
          c2_ = POSITION(',', v_, c1_ + 1);
          f_ = SUBSTRING(v_ FROM pos_ FOR c1_ - pos_);
          lo_ = SUBSTRING(v_ FROM c1_ + 1 FOR c2_ - c1_ - 1);
          ln_ = SUBSTRING(v_ FROM c2_ + 1 FOR semi_ - c2_ - 1);
          pos_ = semi_ + 1;
          INSERT INTO {{P}}LOG (SOURCE_ID, PACKET_ID, NUM_POLE, BLOB_OLD, BLOB_NEW)
            VALUES (:SOURCE_ID, :PACKET_ID, :f_, IIF(:lo_ < 0, NULL, SUBSTRING(:v_ FROM :pos_ FOR MAXVALUE(:lo_, 0))),
                    IIF(:ln_ < 0, NULL, SUBSTRING(:v_ FROM :pos_ + MAXVALUE(:lo_, 0) FOR MAXVALUE(:ln_, 0))));
          pos_ = pos_ + MAXVALUE(lo_, 0) + MAXVALUE(ln_, 0);
          FIELDS_ = FIELDS_ + 1;
        END
      END
      ELSE IF (b_ IS NOT NULL) THEN
      BEGIN
        -- The same on a BLOB: each header read as a short VARCHAR, the values as BLOBs.
        pos_ = 1;
        end_ = OCTET_LENGTH(b_);
        WHILE (pos_ <= end_) DO
        BEGIN
          v_ = SUBSTRING(b_ FROM pos_ FOR 40);
          semi_ = POSITION(';', v_);
          c1_ = POSITION(',', v_);
          c2_ = POSITION(',', v_, c1_ + 1);
          f_ = SUBSTRING(v_ FROM 1 FOR c1_ - 1);
          lo_ = SUBSTRING(v_ FROM c1_ + 1 FOR c2_ - c1_ - 1);
          ln_ = SUBSTRING(v_ FROM c2_ + 1 FOR semi_ - c2_ - 1);
          pos_ = pos_ + semi_;
          INSERT INTO {{P}}LOG (SOURCE_ID, PACKET_ID, NUM_POLE, BLOB_OLD, BLOB_NEW)
            VALUES (:SOURCE_ID, :PACKET_ID, :f_, IIF(:lo_ < 0, NULL, SUBSTRING(:b_ FROM :pos_ FOR MAXVALUE(:lo_, 0))),
                    IIF(:ln_ < 0, NULL, SUBSTRING(:b_ FROM :pos_ + MAXVALUE(:lo_, 0) FOR MAXVALUE(:ln_, 0))));
          pos_ = pos_ + MAXVALUE(lo_, 0) + MAXVALUE(ln_, 0);
          FIELDS_ = FIELDS_ + 1;
        END
      END
    END
    SUSPEND;
  END
END
^
-- object: PROCEDURE BLOB_INS
-- The article's BLOB_INS, batched: the log database pulls the field rows of
-- packets LO..HI from the source's data table LOG_<DATA_TABLE> itself, over
-- EXECUTE STATEMENT ... ON EXTERNAL, and keeps those whose packet this very
-- transaction inserted (LOAD_TX), so a row of a packet outside the batch is
-- never copied. Credentials arrive as parameters: they are in no SQL text.
-- Values up to 1000 bytes travel as VARCHAR inside the fetched row; only
-- longer ones as BLOBs (each BLOB costs its own calls to the source: over
-- TCP 7x slower, measured by scripts/bench_transfer.py --explore).
CREATE OR ALTER PROCEDURE {{P}}BLOB_INS (
  SOURCE_ID INTEGER, DATA_TABLE SMALLINT, LO BIGINT, HI BIGINT,
  BASE_ VARCHAR(1000) CHARACTER SET UTF8, USER_ VARCHAR(63) CHARACTER SET UTF8,
  PASS_ VARCHAR(255) CHARACTER SET UTF8, ROLE_ VARCHAR(63) CHARACTER SET UTF8)
RETURNS (ROWS_ INTEGER)
AS
  DECLARE cols_ VARCHAR(1000);
  DECLARE sql_ VARCHAR(3000);
  DECLARE packet_ BIGINT;
  DECLARE last_ BIGINT = -1;
  DECLARE keep_ BOOLEAN = FALSE;
  DECLARE pole_ INTEGER;
  DECLARE so_ VARCHAR(1000) CHARACTER SET OCTETS;
  DECLARE sn_ VARCHAR(1000) CHARACTER SET OCTETS;
  DECLARE bo_ BLOB SUB_TYPE BINARY;
  DECLARE bn_ BLOB SUB_TYPE BINARY;
  DECLARE tx_ BIGINT;
BEGIN
  ROWS_ = 0;
  tx_ = CURRENT_TRANSACTION;
  -- DATA_TABLE is a SMALLINT: the text built here holds no value from outside.
  -- LOG_3 too: it should be empty, but a row that reached it (a trigger compiled
  -- with an outdated view during a rotation, docs/rotation.md) still ships.
  cols_ = 'l.PACKET, l.NUM_POLE, IIF(OCTET_LENGTH(l.BLOB_OLD) <= 1000, CAST(l.BLOB_OLD AS VARCHAR(1000) CHARACTER SET OCTETS), NULL), IIF(OCTET_LENGTH(l.BLOB_OLD) > 1000, l.BLOB_OLD, NULL), '
         || 'IIF(OCTET_LENGTH(l.BLOB_NEW) <= 1000, CAST(l.BLOB_NEW AS VARCHAR(1000) CHARACTER SET OCTETS), NULL), IIF(OCTET_LENGTH(l.BLOB_NEW) > 1000, l.BLOB_NEW, NULL) ';
  sql_ = 'SELECT ' || cols_ || 'FROM {{P}}LOG_' || DATA_TABLE || ' l WHERE l.PACKET BETWEEN :lo AND :hi '
         || 'UNION ALL SELECT ' || cols_ || 'FROM {{P}}LOG_3 l JOIN {{P}}LOG_PACKET p ON p.ID = l.PACKET '
         || 'WHERE p.DATA_TABLE = ' || DATA_TABLE || ' AND l.PACKET BETWEEN :lo AND :hi';
  FOR EXECUTE STATEMENT (sql_) (lo := :LO, hi := :HI)
      ON EXTERNAL :BASE_ AS USER :USER_ PASSWORD :PASS_ ROLE :ROLE_
      INTO :packet_, :pole_, :so_, :bo_, :sn_, :bn_
  DO
  BEGIN
    IF (packet_ IS DISTINCT FROM last_) THEN
    BEGIN
      keep_ = EXISTS (SELECT 1 FROM {{P}}LOG_PACKET
                      WHERE SOURCE_ID = :SOURCE_ID AND PACKET_ID = :packet_ AND LOAD_TX = :tx_);
      last_ = packet_;
    END
    IF (keep_) THEN
    BEGIN
      INSERT INTO {{P}}LOG (SOURCE_ID, PACKET_ID, NUM_POLE, BLOB_OLD, BLOB_NEW)
        VALUES (:SOURCE_ID, :packet_, :pole_, COALESCE(:bo_, :so_), COALESCE(:bn_, :sn_));
      ROWS_ = ROWS_ + 1;
    END
  END
  SUSPEND;
END
^
