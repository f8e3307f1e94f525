-- Rows init adds once the objects exist (a second transaction: Firebird
-- cannot insert into a table created in the same, uncommitted transaction).
INSERT INTO {{P}}LOG_INFO (ZAPIS, DATA, ID_TABLE) SELECT 1, LOCALTIMESTAMP, 1 FROM RDB$DATABASE
  WHERE NOT EXISTS (SELECT 1 FROM {{P}}LOG_INFO)
^
INSERT INTO {{P}}LOG_PACKET_FLAG (SEEN_ID) SELECT 0 FROM RDB$DATABASE
  WHERE NOT EXISTS (SELECT 1 FROM {{P}}LOG_PACKET_FLAG)
^
