-- Price monitor (workloads/storefleet/prices/monitor.py): the running time integral of each
-- product's price, kept beside conta_verde.price_history so that a product's time-weighted
-- average over any window costs two index probes instead of a scan of the window's history.
-- price_history stays as migration 0001 made it; these triggers only follow its changes.

CREATE SCHEMA IF NOT EXISTS price_monitor;

-- One row per price_history row. A product's steps are ordered by (valid_from, history_id) (two
-- changes in one transaction share valid_from; the later id is the price that stayed). `area` is
-- the integral of the price, in price x seconds, from the product's first step to valid_from:
-- the sum of price_i * (valid_from_{i+1} - valid_from_i) over the steps before this one.
CREATE TABLE price_monitor.price_steps (
    store_id    text          NOT NULL,
    product_id  bigint        NOT NULL,
    valid_from  timestamptz   NOT NULL,
    history_id  bigint        NOT NULL,
    price       numeric(12,2) NOT NULL,
    area        numeric       NOT NULL,
    -- Covering, so "the step in force at time t" is one backward index-only probe.
    PRIMARY KEY (store_id, product_id, valid_from, history_id) INCLUDE (price, area)
);

-- Recompute the steps of the given products from price_history (every product when both arrays
-- are NULL). Used when history rows are deleted or updated, and to fill the table at first.
CREATE FUNCTION price_monitor.rebuild_steps(store_ids text[], product_ids bigint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF store_ids IS NULL AND product_ids IS NULL THEN
        TRUNCATE price_monitor.price_steps;
        INSERT INTO price_monitor.price_steps
        SELECT store_id, product_id, valid_from, id, price,
               coalesce(sum(segment) OVER before_me, 0)
        FROM (SELECT h.*, h.price * extract(epoch FROM lead(h.valid_from) OVER (
                         PARTITION BY h.store_id, h.product_id ORDER BY h.valid_from, h.id)
                     - h.valid_from) AS segment
              FROM conta_verde.price_history h) s
        WINDOW before_me AS (PARTITION BY store_id, product_id ORDER BY valid_from, id
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);
        RETURN;
    END IF;
    DELETE FROM price_monitor.price_steps s
    USING (SELECT DISTINCT * FROM unnest(store_ids, product_ids) AS k(store_id, product_id)) k
    WHERE s.store_id = k.store_id AND s.product_id = k.product_id;
    INSERT INTO price_monitor.price_steps
    SELECT store_id, product_id, valid_from, id, price, coalesce(sum(segment) OVER before_me, 0)
    FROM (SELECT h.*, h.price * extract(epoch FROM lead(h.valid_from) OVER (
                     PARTITION BY h.store_id, h.product_id ORDER BY h.valid_from, h.id)
                 - h.valid_from) AS segment
          FROM conta_verde.price_history h
          JOIN (SELECT DISTINCT * FROM unnest(store_ids, product_ids) AS k(store_id, product_id)) k
            ON h.store_id = k.store_id AND h.product_id = k.product_id) s
    WINDOW before_me AS (PARTITION BY store_id, product_id ORDER BY valid_from, id
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);
END;
$$;

-- Products whose steps must be rebuilt when the transaction commits: a history row dated before
-- one of its existing steps (the updater's back-fill) moves the areas of all the steps after it.
-- Rebuilding each such product once at commit, rather than shifting its later steps at every
-- such row, keeps a back-fill linear. Rows live only inside the writing transaction.
CREATE TABLE price_monitor.stale_products (
    store_id    text    NOT NULL,
    product_id  bigint  NOT NULL,
    PRIMARY KEY (store_id, product_id)
);

CREATE FUNCTION price_monitor.rebuild_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM price_monitor.stale_products
    WHERE store_id = NEW.store_id AND product_id = NEW.product_id;
    IF FOUND THEN
        PERFORM price_monitor.rebuild_steps(ARRAY[NEW.store_id], ARRAY[NEW.product_id]);
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER price_monitor_rebuild_stale
AFTER INSERT ON price_monitor.stale_products
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION price_monitor.rebuild_stale();

-- A new history row becomes a step. Usually it is the product's latest (the trigger on
-- products.price dates changes now()): its area extends the previous step's. A row dated before
-- existing steps marks the product stale instead (rebuilt at commit, see above).
-- Every new row also tells `storefleet prices watch` (LISTEN storefleet_prices, payload store_id;
-- PostgreSQL sends one notice per distinct payload per transaction).
CREATE FUNCTION price_monitor.add_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev price_monitor.price_steps;
    area numeric := 0;
BEGIN
    PERFORM pg_notify('storefleet_prices', NEW.store_id);
    PERFORM FROM price_monitor.price_steps s
    WHERE s.store_id = NEW.store_id AND s.product_id = NEW.product_id
      AND (s.valid_from, s.history_id) > (NEW.valid_from, NEW.id)
    LIMIT 1;
    IF FOUND THEN
        INSERT INTO price_monitor.stale_products VALUES (NEW.store_id, NEW.product_id)
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END IF;
    SELECT * INTO prev FROM price_monitor.price_steps s
    WHERE s.store_id = NEW.store_id AND s.product_id = NEW.product_id
      AND (s.valid_from, s.history_id) < (NEW.valid_from, NEW.id)
    ORDER BY s.valid_from DESC, s.history_id DESC LIMIT 1;
    IF FOUND THEN
        area := prev.area + prev.price * extract(epoch FROM NEW.valid_from - prev.valid_from);
    END IF;
    INSERT INTO price_monitor.price_steps (store_id, product_id, valid_from, history_id, price, area)
    VALUES (NEW.store_id, NEW.product_id, NEW.valid_from, NEW.id, NEW.price, area);
    RETURN NULL;
END;
$$;

CREATE TRIGGER price_monitor_add_step
AFTER INSERT ON conta_verde.price_history
FOR EACH ROW EXECUTE FUNCTION price_monitor.add_step();

-- History is append-only in practice; rows deleted (a product deleted: ON DELETE CASCADE) or
-- edited by hand make their products' steps be recomputed.
CREATE FUNCTION price_monitor.history_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM price_monitor.rebuild_steps(array_agg(store_id), array_agg(product_id))
    FROM (SELECT DISTINCT store_id, product_id FROM old_rows) k
    HAVING count(*) > 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER price_monitor_history_deleted
AFTER DELETE ON conta_verde.price_history
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.history_deleted();

CREATE FUNCTION price_monitor.history_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM price_monitor.rebuild_steps(array_agg(store_id), array_agg(product_id))
    FROM (SELECT store_id, product_id FROM old_rows
          UNION SELECT store_id, product_id FROM new_rows) k
    HAVING count(*) > 0;
    PERFORM pg_notify('storefleet_prices', store_id) FROM (SELECT DISTINCT store_id FROM new_rows) s;
    RETURN NULL;
END;
$$;

CREATE TRIGGER price_monitor_history_updated
AFTER UPDATE ON conta_verde.price_history
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.history_updated();

CREATE FUNCTION price_monitor.history_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE price_monitor.price_steps;
    RETURN NULL;
END;
$$;

CREATE TRIGGER price_monitor_history_truncated
AFTER TRUNCATE ON conta_verde.price_history
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.history_truncated();

-- Whatever history exists already (a database migrated before this file) gets its steps.
SELECT price_monitor.rebuild_steps(NULL, NULL);
