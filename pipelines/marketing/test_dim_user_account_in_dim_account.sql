-- dbt test relationships(dim_user.account_id -> dim_account.account_id): users whose
-- account is not in dim_account (deleted, or not seen yet).
SELECT COUNT(*) AS violations
FROM dim_user u
LEFT JOIN dim_account a ON u.account_id = a.account_id
WHERE a.account_id IS NULL
