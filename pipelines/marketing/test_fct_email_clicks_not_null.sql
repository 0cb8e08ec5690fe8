-- dbt tests not_null(activity_id, email_send_id, lead_id, clicked_at of fct_email_clicks).
SELECT COUNT(*) AS violations
FROM fct_email_clicks
WHERE activity_id IS NULL OR email_send_id IS NULL OR lead_id IS NULL OR clicked_at IS NULL
