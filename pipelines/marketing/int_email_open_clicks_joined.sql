-- int_email_open_clicks_joined: every open, left-joined with the clicks of the same e-mail
-- send (email_send_id and lead_id), which are first summed per send so that an open stays
-- one row: how many clicks the send had, the first click, and whether it was clicked.
WITH clicks_per_send AS (
    SELECT email_send_id, lead_id, COUNT(*) AS clicks, MIN(clicked_at) AS first_clicked_at
    FROM fct_email_clicks
    GROUP BY email_send_id, lead_id
)
SELECT
    o.activity_id AS open_id,
    o.email_send_id,
    o.lead_id,
    o.campaign_id,
    o.email_name,
    o.opened_at,
    COALESCE(c.clicks, 0) AS clicks,
    c.first_clicked_at,
    c.clicks IS NOT NULL AS was_clicked
FROM fct_email_opens o
LEFT JOIN clicks_per_send c
    ON o.email_send_id = c.email_send_id AND o.lead_id = c.lead_id
