-- fct_email_clicks: one row per link click in an e-mail, of a lead that exists.
SELECT
    c.id AS activity_id,
    c.email_send_id,
    c.lead_id,
    c.campaign_id,
    c.campaign_run_id,
    c.email_template_id,
    c.primary_attribute_value AS email_name,
    c.link,
    c.device,
    c.platform,
    c.is_mobile_device,
    c.activity_date AS clicked_at
FROM marketo_activity_click_email c
JOIN marketo_lead l ON c.lead_id = l.id
