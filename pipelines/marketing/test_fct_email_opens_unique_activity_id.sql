-- dbt test unique(activity_id of fct_email_opens): the number of activity_id values with more than one row.
SELECT COUNT(*) AS violations
FROM (
    SELECT activity_id
    FROM fct_email_opens
    GROUP BY activity_id
    HAVING COUNT(*) > 1
) d
