-- dbt test unique(open_id of int_email_open_clicks_joined): the number of open_id values with more than one row.
SELECT COUNT(*) AS violations
FROM (
    SELECT open_id
    FROM int_email_open_clicks_joined
    GROUP BY open_id
    HAVING COUNT(*) > 1
) d
