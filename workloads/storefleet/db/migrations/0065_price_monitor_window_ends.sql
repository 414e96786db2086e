-- Price monitor, fast path (workloads/storefleet/prices/monitor.py; docs/price-monitor.md): the
-- deals query needs, per product, the step in force at `at` (the current price) and the step in
-- force when the window opens (`at - M months`). Probing price_steps for both costs two index
-- probes per product per request (200,000 for 100,000 products). Instead keep them, per period
-- M and product, in price_monitor.window_ends, with the instants [valid_since, valid_until)
-- over which both stay the steps in force: a request refreshes only its period's rows that
-- expired (few: a row expires when the product's price changes or the window's opening passes
-- a change) and then reads 100,000 rows with arithmetic, no probe. A row not valid at the
-- request's instant is never used: that product is probed as before, so answers stay exact.
-- Migrations 0050 and 0060 are unchanged; these triggers follow price_steps and products.

-- The steps in force for one period and product, as the deals query uses them.
CREATE TABLE price_monitor.window_ends (
    months       smallint      NOT NULL,
    store_id     text          NOT NULL,
    product_id   bigint        NOT NULL,
    -- The step in force at the instant (NULL: the product had no price yet).
    cur_from     timestamptz,
    cur_price    numeric(12,2),
    cur_area     numeric,
    -- The step in force when the window opens (NULL: the product's history starts later).
    open_from    timestamptz,
    open_price   numeric(12,2),
    open_area    numeric,
    -- The product's first step, kept only when open_from is NULL (then the average runs from it).
    first_from   timestamptz,
    -- The same in float8, for a cheap first filter of the deals query (integral at instant t,
    -- in epoch seconds, is f_a + f_b * t; the average runs over `span` or from f_start). The
    -- query keeps only rows that float8 cannot tell from a deal (with a tolerance far above its
    -- rounding error), then decides on the exact numeric columns above.
    f_price      float8,
    f_a          float8,
    f_b          float8,
    f_start      float8,
    -- The row holds for every instant t with valid_since <= t < valid_until. New rows and rows
    -- whose product's steps were rebuilt are '-infinity' (expired, to be computed).
    valid_since  timestamptz   NOT NULL DEFAULT '-infinity',
    valid_until  timestamptz   NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (months, store_id, product_id)
);
-- The refresh finds a period's expired rows; the triggers find a product's rows of every period.
CREATE INDEX window_ends_expiry ON price_monitor.window_ends (months, valid_until);
CREATE INDEX window_ends_early ON price_monitor.window_ends (months, valid_since);
CREATE INDEX window_ends_product ON price_monitor.window_ends (store_id, product_id);

-- The periods (months) asked so far: their rows exist for every product.
CREATE TABLE price_monitor.window_periods (
    months    smallint     PRIMARY KEY CHECK (months BETWEEN 1 AND 60),
    added_at  timestamptz  NOT NULL DEFAULT now()
);

-- The steps in force for (store, product) at `at` for a window of `months` months, by index
-- probes into price_steps, with the instants over which they stay so. The same rule as the deals
-- query of 0050: the step in force at t is the latest by (valid_from, history_id) with
-- valid_from <= t. Inlined by the planner (one SELECT, STABLE), so callers stay set-based.
CREATE FUNCTION price_monitor.window_ends_at(p_store text, p_product bigint, p_months integer,
                                             p_at timestamptz)
RETURNS TABLE (cur_from timestamptz, cur_price numeric, cur_area numeric,
               open_from timestamptz, open_price numeric, open_area numeric,
               first_from timestamptz, f_price float8, f_a float8, f_b float8, f_start float8,
               valid_since timestamptz, valid_until timestamptz)
LANGUAGE sql STABLE AS $$
SELECT cur.valid_from, cur.price, cur.area, op.valid_from, op.price, op.area,
       CASE WHEN op.valid_from IS NULL THEN fst.valid_from END,
       cur.price::float8,
       (cur.area - cur.price * extract(epoch FROM cur.valid_from)
        - coalesce(op.area - op.price * (extract(epoch FROM op.valid_from)
                                         + extract(epoch FROM w.span)), 0))::float8,
       (cur.price - coalesce(op.price, 0))::float8,
       CASE WHEN op.valid_from IS NULL THEN extract(epoch FROM fst.valid_from)::float8 END,
       -- The current step holds from its valid_from, the opening one once the window's
       -- opening reached it (t - M months >= its valid_from).
       greatest(coalesce(cur.valid_from, '-infinity'),
                coalesce(op.valid_from + w.span, '-infinity')),
       -- Until the next step takes over: at the instant, or at the window's opening; with no
       -- opening step, until the opening reaches the first step; with no current step, until
       -- the first step.
       least(coalesce(CASE WHEN cur.valid_from IS NULL THEN fst.valid_from ELSE cur_next.valid_from END,
                      'infinity'),
             coalesce(CASE WHEN op.valid_from IS NULL THEN fst.valid_from ELSE op_next.valid_from END
                      + w.span, 'infinity'))
FROM (SELECT p_months * interval '2630016 seconds' AS span) w
LEFT JOIN LATERAL (
    SELECT s.valid_from, s.history_id, s.price, s.area FROM price_monitor.price_steps s
    WHERE s.store_id = p_store AND s.product_id = p_product AND s.valid_from <= p_at
    ORDER BY s.valid_from DESC, s.history_id DESC LIMIT 1) cur ON true
LEFT JOIN LATERAL (
    SELECT s.valid_from, s.history_id, s.price, s.area FROM price_monitor.price_steps s
    WHERE s.store_id = p_store AND s.product_id = p_product AND s.valid_from <= p_at - w.span
    ORDER BY s.valid_from DESC, s.history_id DESC LIMIT 1) op ON true
LEFT JOIN LATERAL (
    SELECT s.valid_from FROM price_monitor.price_steps s
    WHERE (op.valid_from IS NULL OR cur.valid_from IS NULL)
      AND s.store_id = p_store AND s.product_id = p_product
    ORDER BY s.valid_from, s.history_id LIMIT 1) fst ON true
LEFT JOIN LATERAL (
    SELECT s.valid_from FROM price_monitor.price_steps s
    WHERE cur.valid_from IS NOT NULL AND s.store_id = p_store AND s.product_id = p_product
      AND (s.valid_from, s.history_id) > (cur.valid_from, cur.history_id)
    ORDER BY s.valid_from, s.history_id LIMIT 1) cur_next ON true
LEFT JOIN LATERAL (
    SELECT s.valid_from FROM price_monitor.price_steps s
    WHERE op.valid_from IS NOT NULL AND s.store_id = p_store AND s.product_id = p_product
      AND (s.valid_from, s.history_id) > (op.valid_from, op.history_id)
    ORDER BY s.valid_from, s.history_id LIMIT 1) op_next ON true
$$;

-- Bring period `months` up to date for instant `at` (the deals query calls it before reading).
-- The first call for a period only adds its rows, expired (one row per product); later calls
-- compute the rows expired at `at`. Two statements on purpose: the rows are locked first
-- (skipping those a price change holds: its trigger is moving them), then computed under a
-- newer snapshot, so a step committed before the lock was taken is seen and one committed after
-- finds the computed row and shortens it (the triggers below). Rows added in this same call are
-- not computed: a concurrent price change cannot see them before they are committed.
-- SECURITY DEFINER: the service's read-only role may run this and nothing else that writes.
-- Returns the rows computed, or -1 when the period has no rows yet (just added, or being added
-- by another request): the caller then uses the probing query. An `at` in the future is ignored
-- (0), so rows normally hold from before now() and "expired" is valid_until <= now(); a row
-- that holds only later (computed for a later instant) is probed by the deals query.
CREATE FUNCTION price_monitor.refresh_window_ends(p_months integer, p_at timestamptz)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    keys_store text[];
    keys_product bigint[];
    done bigint;
BEGIN
    IF p_months NOT BETWEEN 1 AND 60 OR p_at IS NULL THEN
        RETURN -1;
    END IF;
    IF NOT EXISTS (SELECT FROM price_monitor.window_periods WHERE months = p_months) THEN
        -- Two first requests at once: one adds, the other reads without the cache.
        IF NOT pg_try_advisory_xact_lock(hashtext('price_monitor.window_periods'), p_months) THEN
            RETURN -1;
        END IF;
        -- Products being added now would miss the period (their trigger cannot see it yet,
        -- this insert cannot see them): wait for them, up to a second, and hold new ones off
        -- for the insert (under a second for 100,000 products); else try at the next request.
        BEGIN
            PERFORM set_config('lock_timeout', '1s', true);
            LOCK TABLE conta_verde.products IN SHARE MODE;
            PERFORM set_config('lock_timeout', '0', true);
        EXCEPTION WHEN lock_not_available THEN
            RETURN -1;
        END;
        INSERT INTO price_monitor.window_periods (months) VALUES (p_months)
        ON CONFLICT DO NOTHING;
        INSERT INTO price_monitor.window_ends (months, store_id, product_id)
        SELECT p_months, store_id, product_id FROM conta_verde.products
        ON CONFLICT DO NOTHING;
        RETURN -1;
    END IF;
    IF p_at > now() THEN
        RETURN 0;
    END IF;
    SELECT array_agg(store_id), array_agg(product_id) INTO keys_store, keys_product
    FROM (SELECT store_id, product_id FROM price_monitor.window_ends
          WHERE months = p_months AND valid_until <= p_at
          FOR UPDATE SKIP LOCKED) k;
    IF keys_store IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE price_monitor.window_ends e
    SET (cur_from, cur_price, cur_area, open_from, open_price, open_area, first_from,
         f_price, f_a, f_b, f_start, valid_since, valid_until)
      = (f.cur_from, f.cur_price, f.cur_area, f.open_from, f.open_price, f.open_area,
         f.first_from, f.f_price, f.f_a, f.f_b, f.f_start, f.valid_since, f.valid_until)
    FROM unnest(keys_store, keys_product) AS k(store_id, product_id)
    CROSS JOIN LATERAL price_monitor.window_ends_at(k.store_id, k.product_id, p_months, p_at) f
    WHERE e.months = p_months AND e.store_id = k.store_id AND e.product_id = k.product_id;
    GET DIAGNOSTICS done = ROW_COUNT;
    IF done > 10000 THEN
        -- A period just computed (or a mass change): plan the next reads on true numbers.
        ANALYZE price_monitor.window_ends;
    END IF;
    RETURN done;
END;
$$;
REVOKE ALL ON FUNCTION price_monitor.refresh_window_ends(integer, timestamptz) FROM PUBLIC;

-- A new step appended to a product's history ends every row of that product at its
-- valid_from: the current step changes there (and the window's opening reaches it only later).
-- A step inserted before existing ones only comes from rebuild_steps, which deleted the
-- product's steps first (rows expired below), so least() is enough.
CREATE FUNCTION price_monitor.window_ends_steps_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM price_monitor.window_periods) THEN
        RETURN NULL;  -- nothing cached (e.g. rebuild_steps(NULL, NULL) after a TRUNCATE)
    END IF;
    UPDATE price_monitor.window_ends e SET valid_until = least(e.valid_until, n.valid_from)
    FROM (SELECT store_id, product_id, min(valid_from) AS valid_from FROM new_steps
          GROUP BY store_id, product_id) n
    WHERE e.store_id = n.store_id AND e.product_id = n.product_id
      AND e.valid_until > n.valid_from;
    RETURN NULL;
END;
$$;

CREATE TRIGGER window_ends_steps_added
AFTER INSERT ON price_monitor.price_steps
REFERENCING NEW TABLE AS new_steps
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.window_ends_steps_added();

-- Steps deleted or edited (rebuild_steps): that product's rows are expired.
CREATE FUNCTION price_monitor.window_ends_steps_removed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE price_monitor.window_ends e
    SET valid_since = '-infinity', valid_until = '-infinity'
    FROM (SELECT DISTINCT store_id, product_id FROM old_steps) o
    WHERE e.store_id = o.store_id AND e.product_id = o.product_id
      AND e.valid_until <> '-infinity';
    RETURN NULL;
END;
$$;

CREATE TRIGGER window_ends_steps_deleted
AFTER DELETE ON price_monitor.price_steps
REFERENCING OLD TABLE AS old_steps
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.window_ends_steps_removed();

CREATE TRIGGER window_ends_steps_updated
AFTER UPDATE ON price_monitor.price_steps
REFERENCING OLD TABLE AS old_steps
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.window_ends_steps_removed();

CREATE FUNCTION price_monitor.window_ends_steps_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    TRUNCATE price_monitor.window_ends, price_monitor.window_periods;
    RETURN NULL;
END;
$$;

CREATE TRIGGER window_ends_steps_truncated
AFTER TRUNCATE ON price_monitor.price_steps
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.window_ends_steps_truncated();

-- A new product gets an expired row in every period asked so far; a deleted one loses its rows.
CREATE FUNCTION price_monitor.window_ends_products_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO price_monitor.window_ends (months, store_id, product_id)
    SELECT m.months, n.store_id, n.product_id
    FROM new_products n CROSS JOIN price_monitor.window_periods m
    ON CONFLICT (months, store_id, product_id)
    DO UPDATE SET valid_since = '-infinity', valid_until = '-infinity';
    RETURN NULL;
END;
$$;

CREATE TRIGGER window_ends_products_added
AFTER INSERT ON conta_verde.products
REFERENCING NEW TABLE AS new_products
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.window_ends_products_added();

CREATE FUNCTION price_monitor.window_ends_products_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM price_monitor.window_ends e USING old_products o
    WHERE e.store_id = o.store_id AND e.product_id = o.product_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER window_ends_products_deleted
AFTER DELETE ON conta_verde.products
REFERENCING OLD TABLE AS old_products
FOR EACH STATEMENT EXECUTE FUNCTION price_monitor.window_ends_products_deleted();

-- The service's role reads the rows and may refresh them through the function only.
GRANT SELECT ON price_monitor.window_ends, price_monitor.window_periods TO storefleet_price_monitor;
GRANT EXECUTE ON FUNCTION price_monitor.refresh_window_ends(integer, timestamptz)
    TO storefleet_price_monitor;
