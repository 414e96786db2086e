-- The bonus job (storefleet bonus run): its bounded working set of purchases, and the coupons it
-- issued, which are also its transactional outbox towards the Kafka topic `coupons`.

-- Purchases of a fleet's stores from the events topic, one row per event_id (a re-delivered event
-- changes nothing). Kept for the long window plus the allowed lateness behind the newest purchase
-- of the fleet, then deleted by the job: the table stays bounded whatever the history.
CREATE TABLE analytics.bonus_purchases (
    event_id    text          PRIMARY KEY,
    fleet       text          NOT NULL,
    store_id    text          NOT NULL,
    user_id     bigint        NOT NULL,
    ts          timestamptz   NOT NULL,
    amount      numeric(16,2) NOT NULL CHECK (amount >= 0),  -- quantity x unit_price
    received_at timestamptz   NOT NULL DEFAULT now()
);
-- The window sums of one user: an index range scan of (store_id, user_id, ts).
CREATE INDEX bonus_purchases_user_time ON analytics.bonus_purchases (store_id, user_id, ts)
    INCLUDE (amount);
-- Pruning and the newest purchase of a fleet.
CREATE INDEX bonus_purchases_fleet_time ON analytics.bonus_purchases (fleet, ts);

-- One coupon per qualifying purchase (UNIQUE purchase_event_id), whatever the restarts.
-- published_at NULL: not yet on the `coupons` topic (the outbox publishes and then sets it).
CREATE TABLE analytics.coupons (
    coupon_code       text          PRIMARY KEY,
    fleet             text          NOT NULL,
    store_id          text          NOT NULL,
    user_id           bigint        NOT NULL,
    discount_percent  numeric(5,2)  NOT NULL CHECK (discount_percent > 0 AND discount_percent < 100),
    purchase_event_id text          NOT NULL UNIQUE,
    purchase_ts       timestamptz   NOT NULL,  -- event time of the qualifying purchase
    short_spend       numeric(16,2) NOT NULL,
    long_spend        numeric(16,2) NOT NULL,
    issued_at         timestamptz   NOT NULL DEFAULT now(),
    published_at      timestamptz
);
-- The cooldown check: a user's coupons by qualifying purchase time.
CREATE INDEX coupons_user_time ON analytics.coupons (store_id, user_id, purchase_ts);
CREATE INDEX coupons_unpublished ON analytics.coupons (fleet, issued_at) WHERE published_at IS NULL;
CREATE INDEX coupons_issued ON analytics.coupons (issued_at);
