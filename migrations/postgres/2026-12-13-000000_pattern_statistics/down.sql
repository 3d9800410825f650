ALTER TABLE patterns DROP COLUMN statistics;
