-- dbt test relationships(fct_email_clicks.lead_id -> dim_user.lead_id): rows of fct_email_clicks whose lead
-- is no Salesforce user's lead (a prospect, or a user without an account).
SELECT COUNT(*) AS violations
FROM fct_email_clicks f
LEFT JOIN (
    SELECT DISTINCT lead_id
    FROM dim_user
    WHERE lead_id IS NOT NULL
) u ON f.lead_id = u.lead_id
WHERE u.lead_id IS NULL
