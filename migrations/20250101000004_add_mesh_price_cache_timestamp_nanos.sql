-- TIMESTAMPTZ keeps microseconds, but signed timestamps carry nanoseconds. The remainder
-- (0-999 ns within the microsecond) is kept here so the newest-wins comparison, and the value a
-- node reads back, are exact.
ALTER TABLE mesh_price_cache
    ADD COLUMN IF NOT EXISTS timestamp_nanos INTEGER NOT NULL DEFAULT 0
        CHECK (timestamp_nanos BETWEEN 0 AND 999);
