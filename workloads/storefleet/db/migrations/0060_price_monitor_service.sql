-- The price-monitor service (`storefleet price-monitor`, workloads/storefleet/prices/service.py):
-- standing watches that survive a restart, and a database role with only the rights it needs.

-- A standing watch: "tell me of every new product at least `discount`% below its time-weighted
-- average price of the last `months` months" (optionally in one store). `owner` is a free label
-- (the dashboard's user) so a user's watches can be listed.
CREATE TABLE price_monitor.watches (
    watch_id    text          PRIMARY KEY,
    months      integer       NOT NULL CHECK (months BETWEEN 1 AND 60),
    discount    numeric       NOT NULL CHECK (discount > 0 AND discount < 100),
    store_id    text,
    owner       text,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    -- When the watch was last compared with the deals (NULL: not yet).
    checked_at  timestamptz
);
CREATE INDEX watches_owner ON price_monitor.watches (owner, created_at);

-- Every new deal a watch found, in the order found (seq), as it was told on Redis pub/sub
-- `storefleet:deals:<watch_id>`. Kept so a client that was not subscribed can read them.
CREATE TABLE price_monitor.watch_deals (
    seq              bigserial     PRIMARY KEY,
    watch_id         text          NOT NULL REFERENCES price_monitor.watches ON DELETE CASCADE,
    store_id         text          NOT NULL,
    product_id       bigint        NOT NULL,
    name             text          NOT NULL,
    current_price    numeric(12,2) NOT NULL,
    average_price    numeric       NOT NULL,
    discount_percent numeric       NOT NULL,
    detected_at      timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX watch_deals_watch ON price_monitor.watch_deals (watch_id, seq);

-- The deals a watch has already told and that are still deals: a deal is new when it is not
-- here. Kept in the database so a restarted service neither repeats them nor misses the deals
-- that appeared while it was down.
CREATE TABLE price_monitor.watch_told (
    watch_id    text    NOT NULL REFERENCES price_monitor.watches ON DELETE CASCADE,
    store_id    text    NOT NULL,
    product_id  bigint  NOT NULL,
    PRIMARY KEY (watch_id, store_id, product_id)
);

-- The service's own role: reads prices, writes only its watches. Roles belong to the whole
-- PostgreSQL cluster (several databases may share it), hence "create unless it exists". It has
-- no password here (no credential in code): on Kubernetes the chart's price-monitor role Job sets
-- it (`storefleet price-monitor set-role-password`); see docs/price-monitor.md.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'storefleet_price_monitor') THEN
        CREATE ROLE storefleet_price_monitor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END;
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO storefleet_price_monitor', current_database());
END;
$$;
GRANT USAGE ON SCHEMA conta_verde, price_monitor TO storefleet_price_monitor;
GRANT SELECT ON conta_verde.products, price_monitor.price_steps TO storefleet_price_monitor;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON price_monitor.watches, price_monitor.watch_deals, price_monitor.watch_told
    TO storefleet_price_monitor;
GRANT USAGE ON SEQUENCE price_monitor.watch_deals_seq_seq TO storefleet_price_monitor;
