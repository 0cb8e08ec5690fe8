-- country_email_engagement: per billing country of the account of the opening lead's
-- Salesforce user ('unknown' when the account has none): opens, clicked opens (opens
-- whose send was clicked), click_ratio = clicks / opens, and the number of distinct leads
-- that opened. Opens of leads without a user in dim_user are not counted.
WITH engagement AS (
    SELECT
        COALESCE(a.billing_country, 'unknown') AS billing_country,
        COUNT(*) AS opens,
        SUM(CASE WHEN j.was_clicked THEN 1 ELSE 0 END) AS clicks,
        COUNT(DISTINCT j.lead_id) AS engaged_leads
    FROM int_email_open_clicks_joined j
    JOIN dim_user u ON j.lead_id = u.lead_id
    JOIN dim_account a ON u.account_id = a.account_id
    GROUP BY COALESCE(a.billing_country, 'unknown')
)
SELECT
    billing_country,
    opens,
    clicks,
    CAST(clicks AS DOUBLE) / opens AS click_ratio,
    engaged_leads
FROM engagement
