-- dbt tests not_null(activity_id, email_send_id, lead_id, opened_at of fct_email_opens).
SELECT COUNT(*) AS violations
FROM fct_email_opens
WHERE activity_id IS NULL OR email_send_id IS NULL OR lead_id IS NULL OR opened_at IS NULL
