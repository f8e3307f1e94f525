-- Staging objects in the main (source) database, created by `fbaudit init`.
-- {{P}} is the configured prefix. Each statement ends with a line holding
-- only ^ (the terminator `fbaudit ddl` prints with SET TERM); the
-- "-- object:" line lets init skip what already exists.

-- object: TABLE LOG_INFO
-- The article's control row: ZAPIS = logging on (1) / off (0), ID_TABLE =
-- the data table triggers write to now. Only `fbaudit pause/resume/rotate`
-- update it; triggers only read it (no hot row for writers).
CREATE TABLE {{P}}LOG_INFO (
  ZAPIS SMALLINT DEFAULT 1 NOT NULL,
  DATA TIMESTAMP,
  ID_TABLE SMALLINT DEFAULT 1 NOT NULL,
  SCHEMA_VERSION INTEGER DEFAULT 2 NOT NULL
)
^
-- object: SEQUENCE LOG_PACKET_ID
CREATE SEQUENCE {{P}}LOG_PACKET_ID
^
-- object: TABLE LOG_PACKET
-- One row per changed record, written once by the trigger and never updated:
-- what has been shipped is kept by the transfer (LOG_PACKET_FLAG.SHIPPED_TO,
-- LOG_PENDING, LOG_FAILED below). STATE, ATTEMPTS, LAST_ATTEMPT, LAST_ERROR
-- are what an fbaudit before that kept per packet (read once, by the
-- upgrade of the transfer's progress, docs/transfer.md). PAYLOAD: the
-- logged fields of the change, packed (docs/capture.md "The packed change");
-- NULL in a packet written by an fbaudit before it, whose fields are rows of
-- LOG_1 / LOG_2 (the transfer ships both).
CREATE TABLE {{P}}LOG_PACKET (
  ID BIGINT NOT NULL,
  CREATED_AT TIMESTAMP NOT NULL,
  OPERATION SMALLINT NOT NULL,
  NUM_TABLE INTEGER NOT NULL,
  DATA_TABLE SMALLINT NOT NULL,
  RECORD_KEY VARCHAR(1000) CHARACTER SET UTF8,
  AUTHOR VARCHAR(255) CHARACTER SET UTF8,
  DB_USER VARCHAR(63) CHARACTER SET UTF8,
  CLIENT_ADDRESS VARCHAR(255) CHARACTER SET UTF8,
  TRANSACTION_ID BIGINT,
  CHANGE_COMMENT VARCHAR(255) CHARACTER SET UTF8,
  STATE SMALLINT DEFAULT 0 NOT NULL,
  ATTEMPTS SMALLINT DEFAULT 0 NOT NULL,
  LAST_ATTEMPT TIMESTAMP,
  LAST_ERROR VARCHAR(1000) CHARACTER SET UTF8,
  PAYLOAD BLOB SUB_TYPE BINARY,
  CONSTRAINT {{P}}LOG_PACKET_PK PRIMARY KEY (ID)
)
^
-- object: TABLE LOG_PACKET_1
-- The packets the audit triggers write while LOG_INFO.ID_TABLE = 1 (LOG_PACKET_2: = 2), one
-- row per change and nothing else: rotation drops the table once every packet in it is in the
-- log database, so a change costs the main database one record version (docs/rotation.md).
-- The triggers write it through EXECUTE STATEMENT, which leaves no dependency that would stop
-- the DROP. LOG_PACKET keeps the packets of everything else (baselines, events, the DDL log,
-- packets written before this table existed).
CREATE TABLE {{P}}LOG_PACKET_1 (
  ID BIGINT NOT NULL,
  CREATED_AT TIMESTAMP NOT NULL,
  OPERATION SMALLINT NOT NULL,
  NUM_TABLE INTEGER NOT NULL,
  DATA_TABLE SMALLINT NOT NULL,
  RECORD_KEY VARCHAR(1000) CHARACTER SET UTF8,
  AUTHOR VARCHAR(255) CHARACTER SET UTF8,
  DB_USER VARCHAR(63) CHARACTER SET UTF8,
  CLIENT_ADDRESS VARCHAR(255) CHARACTER SET UTF8,
  TRANSACTION_ID BIGINT,
  CHANGE_COMMENT VARCHAR(255) CHARACTER SET UTF8,
  PAYLOAD BLOB SUB_TYPE BINARY,
  CONSTRAINT {{P}}LOG_PACKET_1_PK PRIMARY KEY (ID)
)
^
-- object: TABLE LOG_PACKET_2
CREATE TABLE {{P}}LOG_PACKET_2 (
  ID BIGINT NOT NULL,
  CREATED_AT TIMESTAMP NOT NULL,
  OPERATION SMALLINT NOT NULL,
  NUM_TABLE INTEGER NOT NULL,
  DATA_TABLE SMALLINT NOT NULL,
  RECORD_KEY VARCHAR(1000) CHARACTER SET UTF8,
  AUTHOR VARCHAR(255) CHARACTER SET UTF8,
  DB_USER VARCHAR(63) CHARACTER SET UTF8,
  CLIENT_ADDRESS VARCHAR(255) CHARACTER SET UTF8,
  TRANSACTION_ID BIGINT,
  CHANGE_COMMENT VARCHAR(255) CHARACTER SET UTF8,
  PAYLOAD BLOB SUB_TYPE BINARY,
  CONSTRAINT {{P}}LOG_PACKET_2_PK PRIMARY KEY (ID)
)
^
-- object: COLUMN LOG_PACKET.PAYLOAD
-- A main database made by fbaudit before the packed change: `fbaudit init`
-- adds the column, `fbaudit sync` then re-creates the triggers that fill it.
ALTER TABLE {{P}}LOG_PACKET ADD PAYLOAD BLOB SUB_TYPE BINARY
^
-- object: TABLE LOG_1
-- One row per changed field: values in canonical form as bytes (docs/capture.md).
CREATE TABLE {{P}}LOG_1 (
  PACKET BIGINT NOT NULL,
  NUM_POLE INTEGER NOT NULL,
  BLOB_OLD BLOB SUB_TYPE BINARY,
  BLOB_NEW BLOB SUB_TYPE BINARY
)
^
-- object: INDEX LOG_1_PACKET
CREATE INDEX {{P}}LOG_1_PACKET ON {{P}}LOG_1 (PACKET)
^
-- object: TABLE LOG_2
CREATE TABLE {{P}}LOG_2 (
  PACKET BIGINT NOT NULL,
  NUM_POLE INTEGER NOT NULL,
  BLOB_OLD BLOB SUB_TYPE BINARY,
  BLOB_NEW BLOB SUB_TYPE BINARY
)
^
-- object: INDEX LOG_2_PACKET
CREATE INDEX {{P}}LOG_2_PACKET ON {{P}}LOG_2 (PACKET)
^
-- object: TABLE LOG_3
-- Stand-in target while LOG_1 or LOG_2 is dropped and re-created (rotation).
CREATE TABLE {{P}}LOG_3 (
  PACKET BIGINT NOT NULL,
  NUM_POLE INTEGER NOT NULL,
  BLOB_OLD BLOB SUB_TYPE BINARY,
  BLOB_NEW BLOB SUB_TYPE BINARY
)
^
-- object: VIEW V_LOG_1
CREATE VIEW {{P}}V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS
  SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM {{P}}LOG_1
^
-- object: VIEW V_LOG_2
CREATE VIEW {{P}}V_LOG_2 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS
  SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM {{P}}LOG_2
^
-- object: TABLE LOG_PACKET_FLAG
-- The fast "anything new?" check without a hot row: triggers never write
-- here. SEEN_ID is a packet sequence value up to which everything is settled
-- (shipped, or rolled back by its writer): when GEN_ID(LOG_PACKET_ID, 0) still
-- equals it, nothing is new. Only the transfer writes it (docs/transfer.md).
CREATE TABLE {{P}}LOG_PACKET_FLAG (
  SEEN_ID BIGINT DEFAULT 0 NOT NULL,
  SHIPPED_TO BIGINT
)
^
-- object: COLUMN LOG_PACKET_FLAG.SHIPPED_TO
-- The transfer's high-water mark: every packet with an id up to SHIPPED_TO is
-- in the log database, except the ids in LOG_PENDING and LOG_FAILED. NULL
-- until the first transfer (or `fbaudit init`) sets it, from the STATE of the
-- packets an older fbaudit marked (docs/transfer.md "What has been shipped").
ALTER TABLE {{P}}LOG_PACKET_FLAG ADD SHIPPED_TO BIGINT
^
-- object: TABLE LOG_PENDING
-- Id ranges up to SHIPPED_TO the transfer did not find when it passed them:
-- ids of transactions still running then (a packet may still commit there),
-- rolled back, or reserved for a baseline not written yet. A packet that
-- appears in a range is shipped and its id taken out of it; a range ends
-- when the oldest active transaction is past TX_LIMIT, the last transaction
-- started when the range was read (2^62: reserved, until the transaction
-- that writes the packets claims the block with its own number).
CREATE TABLE {{P}}LOG_PENDING (
  ID_FROM BIGINT NOT NULL,
  ID_TO BIGINT NOT NULL,
  TX_LIMIT BIGINT NOT NULL,
  CREATED_AT TIMESTAMP DEFAULT LOCALTIMESTAMP NOT NULL,
  CONSTRAINT {{P}}LOG_PENDING_PK PRIMARY KEY (ID_FROM)
)
^
-- object: COLUMN LOG_PENDING.TX_LIMIT
-- The column was TX_MARK in the release before the packet tables LOG_PACKET_1/2. The rename
-- is what stops a transfer of that release, still running during the upgrade, from going on:
-- it never reads those tables, and would record their packets as shipped (every statement it
-- prepares on LOG_PENDING now fails, before it ships or records anything).
ALTER TABLE {{P}}LOG_PENDING ALTER COLUMN TX_MARK TO TX_LIMIT
^
-- object: TABLE LOG_FAILED
-- Packets the transfer could not ship: STATE 0 tried again by the next
-- transfer, 2 failed after 5 attempts (`fbaudit retry`).
CREATE TABLE {{P}}LOG_FAILED (
  ID BIGINT NOT NULL,
  STATE SMALLINT DEFAULT 0 NOT NULL,
  ATTEMPTS SMALLINT DEFAULT 0 NOT NULL,
  LAST_ATTEMPT TIMESTAMP,
  LAST_ERROR VARCHAR(1000) CHARACTER SET UTF8,
  CONSTRAINT {{P}}LOG_FAILED_PK PRIMARY KEY (ID)
)
^
-- object: TABLE LOG_TABLES
-- Name dictionary: table numbers -> names (kept after disable), and the
-- registry settings (JSON lists of column names) so a lost registry can be rebuilt.
CREATE TABLE {{P}}LOG_TABLES (
  NUM_TABLE INTEGER NOT NULL,
  TABLE_NAME VARCHAR(63) CHARACTER SET UTF8 NOT NULL,
  KEY_COLUMNS VARCHAR(2000) CHARACTER SET UTF8,
  AUTHOR_COLUMN VARCHAR(63) CHARACTER SET UTF8,
  EXCLUDED_COLUMNS VARCHAR(4000) CHARACTER SET UTF8,
  ENABLED SMALLINT DEFAULT 1 NOT NULL,
  CONSTRAINT {{P}}LOG_TABLES_PK PRIMARY KEY (NUM_TABLE)
)
^
-- object: TABLE LOG_FIELDS
-- Name dictionary: field numbers -> column names and types (kept when retired).
CREATE TABLE {{P}}LOG_FIELDS (
  NUM_TABLE INTEGER NOT NULL,
  NUM_POLE INTEGER NOT NULL,
  FIELD_NAME VARCHAR(63) CHARACTER SET UTF8 NOT NULL,
  FIELD_TYPE VARCHAR(100) CHARACTER SET UTF8 NOT NULL,
  FIELD_KIND VARCHAR(10) CHARACTER SET UTF8 NOT NULL,
  RETIRED SMALLINT DEFAULT 0 NOT NULL,
  CONSTRAINT {{P}}LOG_FIELDS_PK PRIMARY KEY (NUM_TABLE, NUM_POLE)
)
^
-- object: SEQUENCE DICT_VERSION
-- Moves whenever the name dictionary changes (triggers below, whoever
-- writes): the transfer copies the dictionary to the log database only then.
CREATE SEQUENCE {{P}}DICT_VERSION
^
-- object: TRIGGER LOG_TABLES_DV
CREATE TRIGGER {{P}}LOG_TABLES_DV FOR {{P}}LOG_TABLES ACTIVE AFTER INSERT OR UPDATE OR DELETE POSITION 0
AS
  DECLARE v BIGINT;
BEGIN
  v = GEN_ID({{P}}DICT_VERSION, 1);
END
^
-- object: TRIGGER LOG_FIELDS_DV
CREATE TRIGGER {{P}}LOG_FIELDS_DV FOR {{P}}LOG_FIELDS ACTIVE AFTER INSERT OR UPDATE OR DELETE POSITION 0
AS
  DECLARE v BIGINT;
BEGIN
  v = GEN_ID({{P}}DICT_VERSION, 1);
END
^
-- object: TABLE LOG_ROTATION
-- One row per rotation of the data tables (fbaudit rotate, docs/rotation.md):
-- its phase (switched -> redirected -> dropped -> done), outcome and message,
-- so a postponed rotation resumes where it stopped. Row ID 0 is the lock
-- row: a running rotate holds it, so a second one refuses at once.
CREATE TABLE {{P}}LOG_ROTATION (
  ID INTEGER NOT NULL,
  STARTED_AT TIMESTAMP,
  OLD_TABLE SMALLINT,
  NEW_TABLE SMALLINT,
  SWITCH_TX BIGINT,
  PHASE VARCHAR(20) CHARACTER SET UTF8,
  OUTCOME VARCHAR(20) CHARACTER SET UTF8,
  MESSAGE VARCHAR(2000) CHARACTER SET UTF8,
  ATTEMPTS INTEGER DEFAULT 0 NOT NULL,
  UPDATED_AT TIMESTAMP,
  FINISHED_AT TIMESTAMP,
  ROWS_DROPPED BIGINT,
  PACKETS_DELETED BIGINT,
  SECONDS DOUBLE PRECISION,
  CONSTRAINT {{P}}LOG_ROTATION_PK PRIMARY KEY (ID)
)
^
-- object: TABLE LOG_QUIET
-- A restore with `--audit event` (fbaudit checkpoint restore) inserts its own
-- transaction number here and deletes it again before it commits: the row is
-- never visible to another transaction, and only the audit owner can write
-- it, so the triggers stay silent for that one transaction only (they look
-- here only when the FBAUDIT_QUIET context variable is set).
CREATE TABLE {{P}}LOG_QUIET (
  TX BIGINT NOT NULL,
  CONSTRAINT {{P}}LOG_QUIET_PK PRIMARY KEY (TX)
)
^
-- object: TABLE LOG_PARTS
-- Each audit trigger's source in parts (capture.trigger_parts): the text every version has
-- (FIELD_NAME NULL), each logged column's lines with the column's type and collation when the
-- trigger was made, and (SEQ below zero, empty) the columns every version reads: key, author.
-- The trigger is exactly the concatenation; DDL_FOLLOW re-creates it from the parts of the
-- columns that still exist with that type (or wider), so ALTER TABLE never fails on the audit
-- trigger (docs/schema-changes.md).
CREATE TABLE {{P}}LOG_PARTS (
  NUM_TABLE INTEGER NOT NULL,
  SEQ INTEGER NOT NULL,
  FIELD_NAME VARCHAR(63) CHARACTER SET UTF8,
  F_TYPE SMALLINT,
  F_SUB_TYPE SMALLINT,
  F_CHARSET SMALLINT,
  F_SCALE SMALLINT,
  F_LENGTH INTEGER,
  F_COLLATION SMALLINT,
  PART BLOB SUB_TYPE TEXT CHARACTER SET UTF8 NOT NULL,
  CONSTRAINT {{P}}LOG_PARTS_PK PRIMARY KEY (NUM_TABLE, SEQ)
)
^
-- object: VIEW LOG_PARTS_KEPT
-- Per part: kept (1) when it belongs in the trigger for the table as it is now: text of every
-- version, or a column that exists with the type it had (same type, character set, collation and
-- scale; the same length or longer: a widened column's lines pack any length). GONE: the part's
-- column no longer exists. DDL_FOLLOW builds the trigger from it; status checks against it.
CREATE VIEW {{P}}LOG_PARTS_KEPT (NUM_TABLE, SEQ, FIELD_NAME, PART, KEPT, GONE) AS
SELECT p.NUM_TABLE, p.SEQ, p.FIELD_NAME, p.PART,
  IIF(p.FIELD_NAME IS NULL OR EXISTS (
    SELECT 1 FROM {{P}}LOG_TABLES t JOIN RDB$RELATION_FIELDS rf ON rf.RDB$RELATION_NAME = t.TABLE_NAME
      JOIN RDB$FIELDS f ON f.RDB$FIELD_NAME = rf.RDB$FIELD_SOURCE
    WHERE t.NUM_TABLE = p.NUM_TABLE AND rf.RDB$FIELD_NAME = p.FIELD_NAME
      AND f.RDB$FIELD_TYPE = p.F_TYPE AND COALESCE(f.RDB$FIELD_SUB_TYPE, 0) = COALESCE(p.F_SUB_TYPE, 0)
      AND COALESCE(f.RDB$CHARACTER_SET_ID, -1) = COALESCE(p.F_CHARSET, -1)
      AND COALESCE(rf.RDB$COLLATION_ID, f.RDB$COLLATION_ID, 0) = COALESCE(p.F_COLLATION, 0)
      AND COALESCE(f.RDB$FIELD_SCALE, 0) = COALESCE(p.F_SCALE, 0)
      AND COALESCE(f.RDB$FIELD_LENGTH, 0) >= COALESCE(p.F_LENGTH, 0)), 1, 0),
  IIF(p.FIELD_NAME IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM {{P}}LOG_TABLES t JOIN RDB$RELATION_FIELDS rf ON rf.RDB$RELATION_NAME = t.TABLE_NAME
    WHERE t.NUM_TABLE = p.NUM_TABLE AND rf.RDB$FIELD_NAME = p.FIELD_NAME), 1, 0)
FROM {{P}}LOG_PARTS p
^
-- object: TABLE LOG_UPGRADE
-- The audited tables in an upgrade (`fbaudit upgrade begin` .. `upgrade end`,
-- docs/schema-changes.md). Their audit triggers read only the key (and author) columns, so any
-- other column can be renamed, dropped or retyped; they log who changed which row, not the
-- values (operations 10-12, "values not recorded"). DDL_FOLLOW leaves them alone. COLUMNS holds
-- each logged column's RDB$FIELD_ID when the upgrade began (JSON {"NAME": id}): a renamed or
-- retyped column keeps its id, a dropped and re-added one gets a new one (Firebird never reuses
-- it), so `upgrade end` gives a renamed column its old number. FROM_ID: the packet id then.
-- ENDED_AT: `upgrade end` made the whole trigger again. LOGGED_AT: the rows changed during the
-- upgrade are logged whole; FROM_ID is then the packet id before the last snapshot's, and a change
-- through the keys-only trigger after it (a connection still running that trigger) is reported by
-- status and logged whole by the next `upgrade end`. An end that stopped before LOGGED_AT is
-- finished by running it again. The row stays until the table's next `upgrade begin`.
CREATE TABLE {{P}}LOG_UPGRADE (
  NUM_TABLE INTEGER NOT NULL,
  STARTED_AT TIMESTAMP NOT NULL,
  STARTED_BY VARCHAR(63) CHARACTER SET UTF8,
  FROM_ID BIGINT NOT NULL,
  COLUMNS BLOB SUB_TYPE TEXT CHARACTER SET UTF8,
  ENDED_AT TIMESTAMP,
  LOGGED_AT TIMESTAMP,
  CONSTRAINT {{P}}LOG_UPGRADE_PK PRIMARY KEY (NUM_TABLE)
)
^
-- object: TABLE LOG_TOUCHED
-- `upgrade end`: the keys of one table changed during the upgrade, in the snapshot transaction
-- that logs those rows whole (one index probe per row of the table instead of a search of the
-- packets; the key's hash is indexed, as in the log database).
CREATE GLOBAL TEMPORARY TABLE {{P}}LOG_TOUCHED (
  KEY_HASH BIGINT NOT NULL,
  RECORD_KEY VARCHAR(1000) CHARACTER SET UTF8 NOT NULL
) ON COMMIT DELETE ROWS
^
-- object: INDEX LOG_TOUCHED_HASH
-- A key of up to 4,000 bytes is too long for an index: its hash is indexed.
CREATE INDEX {{P}}LOG_TOUCHED_HASH ON {{P}}LOG_TOUCHED (KEY_HASH)
^
-- object: EXCEPTION DDL_REFUSED
-- Raised by DDL_FOLLOW when an audit trigger cannot follow a dropped column; the message says why.
CREATE EXCEPTION {{P}}DDL_REFUSED 'fbaudit: the audit trigger cannot follow this change'
^
-- object: TRIGGER DDL_FOLLOW
-- After an ALTER TABLE of an audited table (or an ALTER DOMAIN of a column of one), in the same
-- transaction: the audit trigger is re-created from its kept parts (LOG_PARTS_KEPT) unless the
-- table is in an upgrade (LOG_UPGRADE: its trigger reads only the key then). A dropped
-- column then has no dependency left and the DDL commits; logging of the other columns never
-- pauses. Added and retyped columns are logged after `fbaudit sync` (status says so until then).
-- When the new trigger cannot be made while a column it used is gone (a key or author column
-- dropped, or any failure), the DDL fails at once with DDL_REFUSED's message, where Firebird
-- would refuse it at COMMIT without fbaudit. Any other failure keeps the old trigger, which is
-- still valid, and lets the DDL go on.
CREATE OR ALTER TRIGGER {{P}}DDL_FOLLOW ACTIVE AFTER ALTER TABLE OR ALTER DOMAIN POSITION 0
AS
  DECLARE obj VARCHAR(63) CHARACTER SET UTF8;
  DECLARE tbl VARCHAR(63) CHARACTER SET UTF8;
  DECLARE n INTEGER;
  DECLARE trg VARCHAR(63) CHARACTER SET UTF8;
  DECLARE part BLOB SUB_TYPE TEXT CHARACTER SET UTF8;
  DECLARE src BLOB SUB_TYPE TEXT CHARACTER SET UTF8;
  DECLARE gone SMALLINT;
  DECLARE d INTEGER;
BEGIN
  obj = RDB$GET_CONTEXT('DDL_TRIGGER', 'OBJECT_NAME');
  FOR SELECT t.NUM_TABLE, t.TABLE_NAME FROM {{P}}LOG_TABLES t
      WHERE t.ENABLED = 1 AND (t.TABLE_NAME = :obj OR (RDB$GET_CONTEXT('DDL_TRIGGER', 'OBJECT_TYPE') = 'DOMAIN'
        AND EXISTS (SELECT 1 FROM RDB$RELATION_FIELDS rf WHERE rf.RDB$RELATION_NAME = t.TABLE_NAME
                    AND rf.RDB$FIELD_SOURCE = :obj)))
        AND EXISTS (SELECT 1 FROM RDB$TRIGGERS tr WHERE tr.RDB$TRIGGER_NAME = '{{P}}AUDIT_' || t.NUM_TABLE
                    AND tr.RDB$RELATION_NAME = t.TABLE_NAME AND COALESCE(tr.RDB$TRIGGER_INACTIVE, 0) = 0)
        AND EXISTS (SELECT 1 FROM {{P}}LOG_PARTS p WHERE p.NUM_TABLE = t.NUM_TABLE)
        AND NOT EXISTS (SELECT 1 FROM {{P}}LOG_UPGRADE u WHERE u.NUM_TABLE = t.NUM_TABLE AND u.ENDED_AT IS NULL)
      INTO n, tbl DO
  BEGIN
    trg = '{{P}}AUDIT_' || n;
    -- A column the trigger reads is gone: the old trigger cannot stay either.
    gone = IIF(EXISTS (SELECT 1 FROM {{P}}LOG_PARTS_KEPT k WHERE k.NUM_TABLE = :n AND k.GONE = 1), 1, 0);
    IF (EXISTS (SELECT 1 FROM {{P}}LOG_PARTS_KEPT k WHERE k.NUM_TABLE = :n AND k.SEQ < 0 AND k.KEPT = 0)) THEN
    BEGIN
      IF (gone = 1) THEN
        EXCEPTION {{P}}DDL_REFUSED 'fbaudit: ' || tbl || ' is audited and this change drops a column of its audit '
          || 'key (or its author column), which its audit trigger needs. Run `fbaudit disable ' || tbl
          || '` first, and `fbaudit enable ' || tbl || ' --key ...` after (docs/schema-changes.md).';
      d = RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOWED',
                          'audit trigger kept as it was: a key or author column changed type; run fbaudit sync');
    END
    ELSE
    BEGIN
      src = '';
      FOR SELECT k.PART FROM {{P}}LOG_PARTS_KEPT k WHERE k.NUM_TABLE = :n AND k.KEPT = 1 ORDER BY k.SEQ
        INTO part DO src = src || part;
      BEGIN
        -- DDL_LOG leaves this nested CREATE OR ALTER TRIGGER out: the ALTER itself is logged.
        d = RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOW', trg);
        EXECUTE STATEMENT src;
        d = RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOW', NULL);
        d = RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOWED', 'audit trigger followed');
        WHEN ANY DO
        BEGIN
          d = RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOW', NULL);
          -- With a column gone, not refusing would be worse than Firebird's own refusal: a trigger
          -- re-created earlier in this transaction lets the drop commit past the dependency check
          -- and leaves a trigger that fails every write of the table (measured).
          IF (gone = 1) THEN
            EXCEPTION {{P}}DDL_REFUSED 'fbaudit: the audit trigger of ' || tbl || ' could not follow this change '
              || '(SQLCODE ' || SQLCODE || ', GDSCODE ' || GDSCODE || '): nothing was changed. Run `fbaudit disable '
              || tbl || '` first and `fbaudit enable ' || tbl || '` after (docs/schema-changes.md).';
          d = RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOWED', 'audit trigger kept as it was: the new one '
                              || 'failed (SQLCODE ' || SQLCODE || ', GDSCODE ' || GDSCODE || '); run fbaudit sync');
        END
      END
    END
  END
END
^
-- object: GRANT DDL_FOLLOW
GRANT SELECT ON {{P}}LOG_TABLES TO TRIGGER {{P}}DDL_FOLLOW
^
-- object: GRANT DDL_FOLLOW
GRANT SELECT ON {{P}}LOG_PARTS TO TRIGGER {{P}}DDL_FOLLOW
^
-- object: GRANT DDL_FOLLOW
GRANT SELECT ON {{P}}LOG_PARTS_KEPT TO TRIGGER {{P}}DDL_FOLLOW
^
-- object: GRANT LOG_UPGRADE
-- Given with LOG_UPGRADE (init adds both to an older database whose DDL_FOLLOW exists).
GRANT SELECT ON {{P}}LOG_UPGRADE TO TRIGGER {{P}}DDL_FOLLOW
^
-- object: GRANT LOG_PARTS_KEPT
GRANT SELECT ON {{P}}LOG_PARTS TO VIEW {{P}}LOG_PARTS_KEPT
^
-- object: GRANT LOG_PARTS_KEPT
GRANT SELECT ON {{P}}LOG_TABLES TO VIEW {{P}}LOG_PARTS_KEPT
^
-- object: TRIGGER DDL_GUARD
-- The packet tables LOG_PACKET_1 / LOG_PACKET_2 have no dependency that stops a DROP (the audit
-- triggers write them through EXECUTE STATEMENT, docs/rotation.md), and every audited write
-- fails while the current one is missing. Only fbaudit's own DDL (rotation, which sets
-- FBAUDIT_OWN_DDL) may drop them; anyone else's DROP TABLE of them fails at once.
CREATE OR ALTER TRIGGER {{P}}DDL_GUARD ACTIVE BEFORE DROP TABLE POSITION 0
AS
BEGIN
  IF (RDB$GET_CONTEXT('DDL_TRIGGER', 'OBJECT_NAME') IN ('{{P}}LOG_PACKET_1', '{{P}}LOG_PACKET_2')
      AND RDB$GET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_OWN_DDL') IS NULL) THEN
    EXCEPTION {{P}}DDL_REFUSED 'fbaudit: ' || RDB$GET_CONTEXT('DDL_TRIGGER', 'OBJECT_NAME')
      || ' holds the audit triggers'' packets and every audited write needs it; fbaudit rotate drops '
      || 'and re-creates it when it is empty (docs/rotation.md). Nothing was dropped.';
END
^
-- object: TRIGGER DDL_LOG
-- Every DDL statement in the database, as a packet like a row change (OPERATION 8, NUM_TABLE 0,
-- RECORD_KEY the object's name) that the transfer ships exactly once with the data changes;
-- `fbaudit schema-log` lists them. Its fields (docs/schema-changes.md): 1 the event (ALTER
-- TABLE), 2 the object type, 3 the object's name, 4 the statement's text, 5 the client process,
-- 6 what fbaudit did about the audit trigger. Left out: DDL on fbaudit's own objects in fbaudit's
-- own transactions (they set FBAUDIT_OWN_DDL: rotation re-creates its tables daily, sync its
-- triggers); the same objects changed by anyone else are logged. Never fails the user's DDL.
CREATE OR ALTER TRIGGER {{P}}DDL_LOG ACTIVE AFTER ANY DDL STATEMENT POSITION 32000
AS
  DECLARE ev VARCHAR(100) CHARACTER SET OCTETS;
  DECLARE ot VARCHAR(100) CHARACTER SET OCTETS;
  DECLARE nm VARCHAR(252) CHARACTER SET OCTETS;
  DECLARE pr VARCHAR(1020) CHARACTER SET OCTETS;
  DECLARE fo VARCHAR(255) CHARACTER SET OCTETS;
  DECLARE sq BLOB SUB_TYPE BINARY;
  DECLARE pay BLOB SUB_TYPE BINARY;
  DECLARE dt SMALLINT;
BEGIN
  nm = RDB$GET_CONTEXT('DDL_TRIGGER', 'OBJECT_NAME');
  ot = RDB$GET_CONTEXT('DDL_TRIGGER', 'OBJECT_TYPE');
  IF (nm STARTING WITH '{{P}}' AND (RDB$GET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_OWN_DDL') IS NOT NULL
      OR nm = RDB$GET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOW'))) THEN EXIT;
  ev = RDB$GET_CONTEXT('DDL_TRIGGER', 'DDL_EVENT');
  sq = RDB$GET_CONTEXT('DDL_TRIGGER', 'SQL_TEXT');
  pr = RDB$GET_CONTEXT('SYSTEM', 'CLIENT_PROCESS');
  IF (ev IN ('ALTER TABLE', 'ALTER DOMAIN')) THEN
  BEGIN
    fo = RDB$GET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOWED');
    dt = RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_FOLLOWED', NULL);
  END
  pay = '1,-1,' || OCTET_LENGTH(ev) || ';' || ev || '2,-1,' || OCTET_LENGTH(ot) || ';' || ot
        || '3,-1,' || OCTET_LENGTH(nm) || ';' || nm;
  IF (sq IS NOT NULL) THEN pay = pay || '4,-1,' || OCTET_LENGTH(sq) || ';' || sq;
  IF (pr IS NOT NULL) THEN pay = pay || '5,-1,' || OCTET_LENGTH(pr) || ';' || pr;
  IF (fo IS NOT NULL) THEN pay = pay || '6,-1,' || OCTET_LENGTH(fo) || ';' || fo;
  SELECT FIRST 1 ID_TABLE FROM {{P}}LOG_INFO INTO dt;
  IF (dt IS DISTINCT FROM 2) THEN dt = 1;
  INSERT INTO {{P}}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER,
                               CLIENT_ADDRESS, TRANSACTION_ID, PAYLOAD)
  VALUES (GEN_ID({{P}}LOG_PACKET_ID, 1), LOCALTIMESTAMP, 8, 0, :dt, CAST(:nm AS VARCHAR(252) CHARACTER SET UTF8),
          CURRENT_USER, CURRENT_USER, RDB$GET_CONTEXT('SYSTEM', 'CLIENT_ADDRESS'), CURRENT_TRANSACTION, :pay);
  POST_EVENT '{{P}}NEW_PACKET';
  WHEN ANY DO dt = 0;
END
^
-- object: GRANT DDL_LOG
GRANT SELECT ON {{P}}LOG_INFO TO TRIGGER {{P}}DDL_LOG
^
-- object: GRANT DDL_LOG
GRANT INSERT ON {{P}}LOG_PACKET TO TRIGGER {{P}}DDL_LOG
^
-- object: GRANT DDL_LOG
GRANT USAGE ON SEQUENCE {{P}}LOG_PACKET_ID TO TRIGGER {{P}}DDL_LOG
^
