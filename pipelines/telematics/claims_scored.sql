-- claims_scored: every claim with its policy and the telematics of the 5-minute window of
-- its incident (LEFT JOIN: NULL telematics when the vehicle has no readings in that
-- window), rule flags and the next best action a claims system consumes.
--
-- Rules (thresholds here, nowhere else):
--   speed_mismatch     reported speed more than 30 km/h below the window's average speed,
--                      or more than 10 km/h above its maximum speed
--   over_limit         claim amount above the policy's coverage limit
--   early_claim        incident within 30 days of the policy start
--   severity_mismatch  amount implausible for the damage: minor above 5,000.00, moderate
--                      above 15,000.00, total loss below 2,000.00
--   no_telematics      no readings of the vehicle in the incident's window
-- next_best_action: investigate (speed mismatch, severity mismatch, or an early claim over
-- the limit), refer (over the limit, early, or no telematics to check), else fast_track.
WITH scored AS (
    SELECT
        c.claim_id,
        c.policy_id,
        c.vehicle_id,
        p.region,
        p.coverage,
        c.incident_time,
        c.incident_type,
        c.damage_severity,
        c.status,
        c.claim_amount_cents,
        p.coverage_limit_cents,
        c.reported_speed_kmh,
        w.readings AS telematics_readings,
        w.avg_speed_kmh AS telematics_avg_speed_kmh,
        w.max_speed_kmh AS telematics_max_speed_kmh,
        w.harsh_brakes AS telematics_harsh_brakes,
        COALESCE(
            c.reported_speed_kmh < w.avg_speed_kmh - 30.0
                OR c.reported_speed_kmh > w.max_speed_kmh + 10.0,
            FALSE
        ) AS speed_mismatch,
        c.claim_amount_cents > p.coverage_limit_cents AS over_limit,
        c.incident_time < p.start_time + INTERVAL '30' DAY AS early_claim,
        (c.damage_severity = 'minor' AND c.claim_amount_cents > 500000)
            OR (c.damage_severity = 'moderate' AND c.claim_amount_cents > 1500000)
            OR (c.damage_severity = 'total_loss' AND c.claim_amount_cents < 200000)
            AS severity_mismatch,
        w.vehicle_id IS NULL AS no_telematics
    FROM claims c
    JOIN policies p ON c.policy_id = p.policy_id
    LEFT JOIN vehicle_windows w
        ON w.vehicle_id = c.vehicle_id
        AND w.window_start = TUMBLE_START(c.incident_time, INTERVAL '5' MINUTE)
)
SELECT
    claim_id,
    policy_id,
    vehicle_id,
    region,
    coverage,
    incident_time,
    incident_type,
    damage_severity,
    status,
    claim_amount_cents,
    coverage_limit_cents,
    reported_speed_kmh,
    telematics_readings,
    telematics_avg_speed_kmh,
    telematics_max_speed_kmh,
    telematics_harsh_brakes,
    speed_mismatch,
    over_limit,
    early_claim,
    severity_mismatch,
    no_telematics,
    CASE
        WHEN speed_mismatch OR severity_mismatch OR (early_claim AND over_limit)
            THEN 'investigate'
        WHEN over_limit OR early_claim OR no_telematics THEN 'refer'
        ELSE 'fast_track'
    END AS next_best_action
FROM scored
