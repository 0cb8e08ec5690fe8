-- customer_360: one row per customer (deleted customers leave): who they are, how long they
-- have been active, what they spend per merchant category, the events they attend per
-- category and their favourite category.
--
--   lifetime_days       days from first_seen to the customer's latest transaction (calendar
--                       days crossed, UTC; 0 before the first transaction)
--   spend_<category>    amount spent in that merchant category, cents
--   <category>_attended events attended (customer_patterns)
--   favourite_category  the category with the most events attended (ties: the first in
--                       alphabetical order; NULL when none attended)
WITH spend AS (
    SELECT
        customer_id,
        COUNT(*) AS transactions,
        SUM(amount_cents) AS spend_cents,
        SUM(CASE WHEN merchant_category = 'concerts' THEN amount_cents ELSE 0 END) AS spend_concerts_cents,
        SUM(CASE WHEN merchant_category = 'sports' THEN amount_cents ELSE 0 END) AS spend_sports_cents,
        SUM(CASE WHEN merchant_category = 'dining' THEN amount_cents ELSE 0 END) AS spend_dining_cents,
        SUM(CASE WHEN merchant_category = 'travel' THEN amount_cents ELSE 0 END) AS spend_travel_cents,
        SUM(CASE WHEN merchant_category NOT IN ('concerts', 'sports', 'dining', 'travel')
            THEN amount_cents ELSE 0 END) AS spend_everyday_cents,
        SUM(cashback_cents) AS cashback_cents,
        MAX(txn_time) AS last_txn_time
    FROM transactions
    GROUP BY customer_id
),
attended AS (
    SELECT
        customer_id,
        SUM(CASE WHEN category = 'concerts' THEN events_attended ELSE 0 END) AS concerts_attended,
        SUM(CASE WHEN category = 'sports' THEN events_attended ELSE 0 END) AS sports_attended,
        SUM(CASE WHEN category = 'dining' THEN events_attended ELSE 0 END) AS dining_attended,
        SUM(CASE WHEN category = 'travel' THEN events_attended ELSE 0 END) AS travel_attended,
        MAX(events_attended) AS most_attended
    FROM customer_patterns
    GROUP BY customer_id
),
favourite AS (
    SELECT p.customer_id, MIN(p.category) AS favourite_category
    FROM customer_patterns p
    JOIN attended a ON p.customer_id = a.customer_id AND p.events_attended = a.most_attended
    WHERE p.events_attended > 0
    GROUP BY p.customer_id
)
SELECT
    c.customer_id,
    c.name,
    c.segment,
    c.region,
    c.first_seen,
    COALESCE(DATE_DIFF('day', c.first_seen, s.last_txn_time), 0) AS lifetime_days,
    COALESCE(s.transactions, 0) AS transactions,
    COALESCE(s.spend_cents, 0) AS spend_cents,
    COALESCE(s.spend_concerts_cents, 0) AS spend_concerts_cents,
    COALESCE(s.spend_sports_cents, 0) AS spend_sports_cents,
    COALESCE(s.spend_dining_cents, 0) AS spend_dining_cents,
    COALESCE(s.spend_travel_cents, 0) AS spend_travel_cents,
    COALESCE(s.spend_everyday_cents, 0) AS spend_everyday_cents,
    COALESCE(s.cashback_cents, 0) AS cashback_cents,
    COALESCE(a.concerts_attended, 0) AS concerts_attended,
    COALESCE(a.sports_attended, 0) AS sports_attended,
    COALESCE(a.dining_attended, 0) AS dining_attended,
    COALESCE(a.travel_attended, 0) AS travel_attended,
    f.favourite_category
FROM customer_profiles c
LEFT JOIN spend s ON s.customer_id = c.customer_id
LEFT JOIN attended a ON a.customer_id = c.customer_id
LEFT JOIN favourite f ON f.customer_id = c.customer_id
