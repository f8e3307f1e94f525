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
-- One row per changed record. STATE: 0 new, 1 done, 2 failed. PAYLOAD: the
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
-- object: COLUMN LOG_PACKET.PAYLOAD
-- A main database made by fbaudit before the packed change: `fbaudit init`
-- adds the column, `fbaudit sync` then re-creates the triggers that fill it.
ALTER TABLE {{P}}LOG_PACKET ADD PAYLOAD BLOB SUB_TYPE BINARY
^
-- object: INDEX LOG_PACKET_STATE
-- Transfer reads "STATE = 0 ORDER BY STATE, ID" through this index, so the
-- cost does not grow with the number of processed packets.
CREATE INDEX {{P}}LOG_PACKET_STATE ON {{P}}LOG_PACKET (STATE, ID)
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
  SEEN_ID BIGINT DEFAULT 0 NOT NULL
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
