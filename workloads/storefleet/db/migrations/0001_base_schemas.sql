-- Base schemas: Conta Verde (the stores' operational database) and analytics (platform output).
-- Later migrations extend these; never edit a migration that has shipped.

CREATE SCHEMA IF NOT EXISTS conta_verde;
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE conta_verde.users (
    store_id    text        NOT NULL,
    user_id     bigint      NOT NULL,
    name        text        NOT NULL,
    email       text        NOT NULL,
    address     text        NOT NULL DEFAULT '',
    birth_date  date,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, user_id)
);

CREATE TABLE conta_verde.products (
    store_id    text          NOT NULL,
    product_id  bigint        NOT NULL,
    name        text          NOT NULL,
    image       text          NOT NULL DEFAULT '',
    price       numeric(12,2) NOT NULL CHECK (price > 0),
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, product_id)
);

CREATE TABLE conta_verde.stock (
    store_id    text    NOT NULL,
    product_id  bigint  NOT NULL,
    quantity    integer NOT NULL CHECK (quantity >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, product_id),
    FOREIGN KEY (store_id, product_id) REFERENCES conta_verde.products ON DELETE CASCADE
);

CREATE TABLE conta_verde.purchase_orders (
    order_id     text          PRIMARY KEY,
    store_id     text          NOT NULL,
    user_id      bigint        NOT NULL,
    product_id   bigint        NOT NULL,
    quantity     integer       NOT NULL CHECK (quantity > 0),
    unit_price   numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    coupon_code  text,
    -- Units of this order sold beyond the stock available at the time of sale.
    oversold_units integer     NOT NULL DEFAULT 0 CHECK (oversold_units BETWEEN 0 AND quantity),
    created_at   timestamptz   NOT NULL,
    delivered_at timestamptz,
    FOREIGN KEY (store_id, user_id) REFERENCES conta_verde.users,
    FOREIGN KEY (store_id, product_id) REFERENCES conta_verde.products
);
CREATE INDEX purchase_orders_store_time ON conta_verde.purchase_orders (store_id, created_at);

-- Keyed by (store_id, product_id) like products, so history joins without ambiguity.
CREATE TABLE conta_verde.price_history (
    id          bigserial     PRIMARY KEY,
    store_id    text          NOT NULL,
    product_id  bigint        NOT NULL,
    price       numeric(12,2) NOT NULL,
    valid_from  timestamptz   NOT NULL,
    FOREIGN KEY (store_id, product_id) REFERENCES conta_verde.products ON DELETE CASCADE
);
CREATE INDEX price_history_product_time ON conta_verde.price_history (store_id, product_id, valid_from);
CREATE INDEX price_history_time ON conta_verde.price_history (valid_from);

-- The one way price history is written: every insert of a product and every change of its price.
-- `storefleet.price_time` lets a back-fill date the change; otherwise the transaction time is used.
CREATE FUNCTION conta_verde.record_price() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := coalesce(nullif(current_setting('storefleet.price_time', true), '')::timestamptz, now());
BEGIN
    IF TG_OP = 'INSERT' OR NEW.price IS DISTINCT FROM OLD.price THEN
        INSERT INTO conta_verde.price_history (store_id, product_id, price, valid_from)
        VALUES (NEW.store_id, NEW.product_id, NEW.price, at);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER products_price_history
AFTER INSERT OR UPDATE OF price ON conta_verde.products
FOR EACH ROW EXECUTE FUNCTION conta_verde.record_price();

-- Behaviour events as accepted by the webhook; event_id makes the persister idempotent.
CREATE TABLE analytics.events (
    event_id    text          PRIMARY KEY,
    ts          timestamptz   NOT NULL,
    store_id    text          NOT NULL,
    user_id     bigint        NOT NULL,
    type        text          NOT NULL,
    product_id  bigint,
    quantity    integer,
    unit_price  numeric(12,2),
    coupon_code text,
    ingested_at timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX events_store_ts ON analytics.events (store_id, ts);
