-- Version numbers for the packets of a log database made before VERSION_NO (objects.number_versions):
-- 1, 2, 3 ... per record in packet order. It walks LOG_PACKET_KEY in index order (no sort of the keys,
-- which are up to 4,000 bytes each), counting within a run of one key; where another key has the same
-- KEY_HASH (a collision), the number comes from that key's previous packet, already numbered in this
-- transaction. Run with every source's transfer lock held (docs/versions.md).
EXECUTE BLOCK AS
  DECLARE s INTEGER; DECLARE t INTEGER; DECLARE h BIGINT; DECLARE k VARCHAR(1000) CHARACTER SET UTF8;
  DECLARE id BIGINT; DECLARE v BIGINT; DECLARE ps INTEGER; DECLARE pt INTEGER; DECLARE ph BIGINT;
  DECLARE pk VARCHAR(1000) CHARACTER SET UTF8; DECLARE n BIGINT = 0; DECLARE started BOOLEAN = FALSE;
BEGIN
  FOR SELECT SOURCE_ID, NUM_TABLE, KEY_HASH, RECORD_KEY, PACKET_ID, VERSION_NO FROM {{P}}LOG_PACKET
      WHERE RECORD_KEY IS NOT NULL ORDER BY SOURCE_ID, NUM_TABLE, KEY_HASH, PACKET_ID
      INTO :s, :t, :h, :k, :id, :v DO
  BEGIN
    IF (started AND s = ps AND t = pt AND h = ph AND k = pk) THEN
      n = n + 1;
    ELSE IF (started AND s = ps AND t = pt AND h = ph) THEN
    BEGIN
      n = NULL;
      SELECT FIRST 1 VERSION_NO FROM {{P}}LOG_PACKET
        WHERE SOURCE_ID = :s AND NUM_TABLE = :t AND KEY_HASH = :h AND PACKET_ID < :id AND RECORD_KEY = :k
        ORDER BY SOURCE_ID DESC, NUM_TABLE DESC, KEY_HASH DESC, PACKET_ID DESC INTO :n;
      n = COALESCE(n, 0) + 1;
    END
    ELSE
      n = 1;
    started = TRUE; ps = s; pt = t; ph = h; pk = k;
    IF (v IS DISTINCT FROM n) THEN UPDATE {{P}}LOG_PACKET SET VERSION_NO = :n WHERE SOURCE_ID = :s AND PACKET_ID = :id;
  END
END
