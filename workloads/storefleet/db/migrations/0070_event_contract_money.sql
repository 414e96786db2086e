-- Money sums wide enough for every event the webhook accepts (issue 10, events/bounds.py).
-- One purchase is at most MAX_QUANTITY x MAX_PRICE = 1,000,000 x 99,999,999.99 < 10^14; a
-- minute's revenue or a user's 6-hour spend is a sum of any number of such amounts, so the
-- columns holding sums take numeric(38,2) (Spark's widest decimal, 10^36): 10^22 maximal
-- purchases before an overflow. The widening keeps every stored value.
ALTER TABLE analytics.insight_minute ALTER COLUMN revenue TYPE numeric(38,2);
ALTER TABLE analytics.bonus_purchases ALTER COLUMN amount TYPE numeric(38,2);
ALTER TABLE analytics.coupons ALTER COLUMN short_spend TYPE numeric(38,2);
ALTER TABLE analytics.coupons ALTER COLUMN long_spend TYPE numeric(38,2);
