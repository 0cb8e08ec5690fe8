-- offers: the prescriptive offers of live customers, one row per customer and offer type,
-- from rules on the events attended (customer_patterns, applied by datetime_updated). An
-- offer appears in the epoch the customer's count crosses its threshold and disappears
-- when the condition no longer holds (a reversed attendance, a deleted customer).
--
-- Rules (thresholds here, nowhere else):
--   concerts  events_attended >= 5   2-for-1 presale tickets
--   sports    events_attended >= 6   season-pass cash back 10 %
--   dining    events_attended >= 8   chef's table invitation
--   travel    events_attended >= 3   lounge access + no FX fees (premier: from 2)
SELECT
    p.customer_id,
    p.category AS offer_type,
    c.name,
    c.segment,
    c.region,
    CASE p.category
        WHEN 'concerts' THEN '2-for-1 concert presale tickets'
        WHEN 'sports' THEN '10 % cash back on a season pass'
        WHEN 'dining' THEN 'Chef''s table invitation'
        ELSE 'Airport lounge access and no FX fees'
    END AS offer,
    p.events_attended,
    p.datetime_updated AS qualified_at
FROM customer_patterns p
JOIN customer_profiles c ON p.customer_id = c.customer_id
WHERE (p.category = 'concerts' AND p.events_attended >= 5)
   OR (p.category = 'sports' AND p.events_attended >= 6)
   OR (p.category = 'dining' AND p.events_attended >= 8)
   OR (p.category = 'travel' AND (p.events_attended >= 3
                                  OR (c.segment = 'premier' AND p.events_attended >= 2)))
