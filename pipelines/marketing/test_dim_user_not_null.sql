-- dbt tests not_null(user_id, email, account_id of dim_user): rows with one of them NULL.
SELECT COUNT(*) AS violations
FROM dim_user
WHERE user_id IS NULL OR email IS NULL OR account_id IS NULL
