-- dbt test unique(account_id of dim_account): the number of account_id values with more than one row.
SELECT COUNT(*) AS violations
FROM (
    SELECT account_id
    FROM dim_account
    GROUP BY account_id
    HAVING COUNT(*) > 1
) d
