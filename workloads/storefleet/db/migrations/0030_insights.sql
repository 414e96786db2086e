-- History of the insights job (workloads/storefleet/insights), one table per kind of result.
-- Scope is a store id or 'ALL'. Every row is written by upsert on its key with absolute values,
-- so a re-delivered micro-batch rewrites the same rows and counts nothing twice.

-- Insights 1-3 per scope and one-minute window.
CREATE TABLE analytics.insight_minute (
    scope            text          NOT NULL,
    minute           timestamptz   NOT NULL,
    product_views    bigint        NOT NULL,
    units_purchased  bigint        NOT NULL,
    revenue          numeric(14,2) NOT NULL,
    updated_at       timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, minute)
);

-- Insight 4 per product and minute; also the input of the rankings (insights 5 and 6).
CREATE TABLE analytics.insight_product_minute (
    store_id         text          NOT NULL,
    product_id       bigint        NOT NULL,
    minute           timestamptz   NOT NULL,
    product_views    bigint        NOT NULL,
    unique_viewers   bigint        NOT NULL,
    units_purchased  bigint        NOT NULL,
    updated_at       timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, minute, product_id)
);
CREATE INDEX insight_product_minute_minute ON analytics.insight_product_minute (minute);

-- Insights 5 and 6: the top products of the last hour, as published at each minute.
CREATE TABLE analytics.insight_ranking (
    scope      text        NOT NULL,
    metric     text        NOT NULL CHECK (metric IN ('top_purchased', 'top_viewed')),
    as_of      timestamptz NOT NULL,  -- the last minute of the hour ranked
    ranking    jsonb       NOT NULL,  -- [{"rank","store_id","product_id","value"}]
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, metric, as_of)
);

-- Insight 7: the job's bounded working set (views and purchases of the last hour and watermark;
-- older rows are pruned) ...
CREATE TABLE analytics.insight_vbp_events (
    event_id    text        PRIMARY KEY,
    store_id    text        NOT NULL,
    user_id     bigint      NOT NULL,
    product_id  bigint      NOT NULL,
    ts          timestamptz NOT NULL,
    is_purchase boolean     NOT NULL
);
CREATE INDEX insight_vbp_events_key ON analytics.insight_vbp_events (store_id, user_id, product_id, ts);
CREATE INDEX insight_vbp_events_ts ON analytics.insight_vbp_events (ts);

-- ... the count per purchase (kept as history) ...
CREATE TABLE analytics.insight_views_before_purchase (
    purchase_event_id text        PRIMARY KEY,
    store_id          text        NOT NULL,
    user_id           bigint      NOT NULL,
    product_id        bigint      NOT NULL,
    ts                timestamptz NOT NULL,
    views_before      integer     NOT NULL
);
CREATE INDEX insight_vbp_ts ON analytics.insight_views_before_purchase (ts);
CREATE INDEX insight_vbp_store_ts ON analytics.insight_views_before_purchase (store_id, ts);

-- ... and the median and mean over the last hour, as published at each minute.
CREATE TABLE analytics.insight_vbp_stats (
    scope      text             NOT NULL,
    as_of      timestamptz      NOT NULL,
    purchases  bigint           NOT NULL,
    median     double precision,
    mean       double precision,
    updated_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, as_of)
);

-- Insight 8 per scope and minute (recomputed from conta_verde.purchase_orders).
CREATE TABLE analytics.insight_oversold_minute (
    scope             text        NOT NULL,
    minute            timestamptz NOT NULL,
    oversold_units    bigint      NOT NULL,
    products_affected bigint      NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, minute)
);
-- The job reads oversold orders incrementally by time; this keeps that read small.
CREATE INDEX purchase_orders_oversold_time ON conta_verde.purchase_orders (created_at)
    WHERE oversold_units > 0;

-- Insight 9 per scope, minute and component.
CREATE TABLE analytics.insight_errors_minute (
    scope      text        NOT NULL,
    minute     timestamptz NOT NULL,
    component  text        NOT NULL,
    errors     bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, minute, component)
);

-- The job's event-time clock: the latest minute seen, which "the last hour" ends with.
CREATE TABLE analytics.insight_clock (
    name   text        PRIMARY KEY,
    minute timestamptz NOT NULL
);
