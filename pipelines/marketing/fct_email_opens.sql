-- fct_email_opens: one row per e-mail open of a lead that exists.
SELECT
    o.id AS activity_id,
    o.email_send_id,
    o.lead_id,
    o.campaign_id,
    o.campaign_run_id,
    o.email_template_id,
    o.primary_attribute_value AS email_name,
    o.device,
    o.platform,
    o.is_mobile_device,
    o.activity_date AS opened_at
FROM marketo_activity_open_email o
JOIN marketo_lead l ON o.lead_id = l.id
