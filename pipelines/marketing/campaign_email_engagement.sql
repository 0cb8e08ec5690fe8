-- campaign_email_engagement: per campaign with sends: sends, leads sent to, opens, clicks,
-- open_rate = sends opened / sends, click_rate = sends clicked / sends.
WITH sends AS (
    SELECT campaign_id, COUNT(*) AS sends, COUNT(DISTINCT lead_id) AS leads_sent
    FROM fct_email_sends
    GROUP BY campaign_id
),
opens AS (
    SELECT campaign_id, COUNT(*) AS opens, COUNT(DISTINCT email_send_id) AS sends_opened
    FROM fct_email_opens
    GROUP BY campaign_id
),
clicks AS (
    SELECT campaign_id, COUNT(*) AS clicks, COUNT(DISTINCT email_send_id) AS sends_clicked
    FROM fct_email_clicks
    GROUP BY campaign_id
)
SELECT
    s.campaign_id,
    s.sends,
    s.leads_sent,
    COALESCE(o.opens, 0) AS opens,
    COALESCE(c.clicks, 0) AS clicks,
    CAST(COALESCE(o.sends_opened, 0) AS DOUBLE) / s.sends AS open_rate,
    CAST(COALESCE(c.sends_clicked, 0) AS DOUBLE) / s.sends AS click_rate
FROM sends s
LEFT JOIN opens o ON s.campaign_id = o.campaign_id
LEFT JOIN clicks c ON s.campaign_id = c.campaign_id
