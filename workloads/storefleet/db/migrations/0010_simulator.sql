-- The simulator's own state, and the coupons the e-commerce side (the simulator) holds.

CREATE SCHEMA IF NOT EXISTS simulator;

-- Where each store's cycle numbering stands, so a restarted process resumes the same store.
CREATE TABLE simulator.stores (
    store_id    text        PRIMARY KEY,
    fleet       text        NOT NULL,
    next_cycle  bigint      NOT NULL CHECK (next_cycle >= 1),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A cycle's events and DataCat file, written in the same transaction as its Conta Verde rows and
-- deleted once the file is in place and the webhook accepted every event. A process that dies in
-- between replays these rows at start, so the three channels never disagree.
CREATE TABLE simulator.outbox (
    store_id    text        NOT NULL,
    cycle       bigint      NOT NULL,
    events      bytea       NOT NULL,  -- zlib of NDJSON, one encoded event per line
    datacat     bytea       NOT NULL,  -- zlib of the DataCat file
    event_count integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, cycle)
);

-- Coupons delivered to the stores (Kafka topic `coupons`), and their one redemption.
CREATE TABLE conta_verde.coupons (
    coupon_code       text          PRIMARY KEY,
    store_id          text          NOT NULL,
    user_id           bigint        NOT NULL,
    discount_percent  numeric(5,2)  NOT NULL CHECK (discount_percent > 0 AND discount_percent < 100),
    issued_at         timestamptz   NOT NULL,
    purchase_event_id text,
    received_at       timestamptz   NOT NULL DEFAULT now(),
    redeemed_order_id text          UNIQUE REFERENCES conta_verde.purchase_orders (order_id),
    redeemed_at       timestamptz
);
CREATE INDEX coupons_pending ON conta_verde.coupons (store_id) WHERE redeemed_order_id IS NULL;

-- A coupon pays for at most one order, whatever happens to the process that redeems it.
CREATE UNIQUE INDEX purchase_orders_coupon_once
    ON conta_verde.purchase_orders (coupon_code) WHERE coupon_code IS NOT NULL;
