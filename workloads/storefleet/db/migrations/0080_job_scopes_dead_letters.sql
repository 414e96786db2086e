-- Spark jobs: scopes per fleet, dead letters, and sums that fit every accepted event.
-- (docs/insights.md is the contract; DESIGN.md §8 the bounds.)

-- Per-event and per-product working rows of the insights job are keyed by the job that wrote
-- them: `fleet:<name>` (that fleet's stores), `platform` (every store, for the scope ALL) or
-- `all` (local mode). A fleet's job and the platform job read the same events and must never
-- overwrite or prune each other's rows. Existing rows were written by the one job there was.
ALTER TABLE analytics.insight_product_minute ADD COLUMN job text NOT NULL DEFAULT 'all';
ALTER TABLE analytics.insight_product_minute DROP CONSTRAINT insight_product_minute_pkey;
ALTER TABLE analytics.insight_product_minute ADD PRIMARY KEY (job, store_id, minute, product_id);
DROP INDEX analytics.insight_product_minute_minute;
CREATE INDEX insight_product_minute_job_minute ON analytics.insight_product_minute (job, minute);

ALTER TABLE analytics.insight_vbp_events ADD COLUMN job text NOT NULL DEFAULT 'all';
ALTER TABLE analytics.insight_vbp_events DROP CONSTRAINT insight_vbp_events_pkey;
ALTER TABLE analytics.insight_vbp_events ADD PRIMARY KEY (job, event_id);
DROP INDEX analytics.insight_vbp_events_key;
DROP INDEX analytics.insight_vbp_events_ts;
CREATE INDEX insight_vbp_events_key
    ON analytics.insight_vbp_events (job, store_id, user_id, product_id, ts);
CREATE INDEX insight_vbp_events_ts ON analytics.insight_vbp_events (job, ts);

ALTER TABLE analytics.insight_views_before_purchase ADD COLUMN job text NOT NULL DEFAULT 'all';
ALTER TABLE analytics.insight_views_before_purchase
    DROP CONSTRAINT insight_views_before_purchase_pkey;
ALTER TABLE analytics.insight_views_before_purchase ADD PRIMARY KEY (job, purchase_event_id);
DROP INDEX analytics.insight_vbp_ts;
DROP INDEX analytics.insight_vbp_store_ts;
CREATE INDEX insight_vbp_ts ON analytics.insight_views_before_purchase (job, ts);
CREATE INDEX insight_vbp_store_ts ON analytics.insight_views_before_purchase (job, store_id, ts);

-- The event-time clock is per job too (name = the job's label); the old shared row is dropped.
DELETE FROM analytics.insight_clock WHERE name = 'events';

-- quantity ≤ 1,000,000 × unit_price ≤ 99,999,999.99 is up to 10^14 per event: revenue and spend
-- sums are numeric(38,2) as events/bounds.py promises, so no accepted event can overflow them.
ALTER TABLE analytics.insight_minute ALTER COLUMN revenue TYPE numeric(38,2);
ALTER TABLE analytics.bonus_purchases ALTER COLUMN amount TYPE numeric(38,2);
ALTER TABLE analytics.coupons ALTER COLUMN short_spend TYPE numeric(38,2);
ALTER TABLE analytics.coupons ALTER COLUMN long_spend TYPE numeric(38,2);

-- Messages the Spark jobs could not process (also on the dead-letter topic, with the message):
-- one row per consumer, job and message position, so a re-delivered micro-batch counts nothing
-- twice. `SELECT consumer, job, count(*) ... GROUP BY 1, 2` is the count.
CREATE TABLE analytics.dead_letters (
    consumer    text        NOT NULL,  -- "insights", "bonus"
    job         text        NOT NULL,  -- insights: fleet:<name> | platform | all; bonus: <fleet>
    topic       text        NOT NULL,
    "partition" integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    reason      text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, job, topic, "partition", "offset")
);
CREATE INDEX dead_letters_at ON analytics.dead_letters (at);
