-- dbt test unique(user_id of dim_user): the number of user_id values with more than one row.
SELECT COUNT(*) AS violations
FROM (
    SELECT user_id
    FROM dim_user
    GROUP BY user_id
    HAVING COUNT(*) > 1
) d
