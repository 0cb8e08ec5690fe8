-- dbt test not_null(account_id of dim_account): rows without an account_id.
SELECT COUNT(*) AS violations
FROM dim_account
WHERE account_id IS NULL
