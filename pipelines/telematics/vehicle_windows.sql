-- vehicle_windows: per vehicle and 5-minute tumbling event-time window — the number of
-- readings, average and maximum speed (km/h), harsh brakes (acceleration below -4.0 m/s²)
-- and the distance travelled (metres). Emitted on update: a window's row appears with its
-- first reading and is corrected as (late) readings arrive, until the watermark passes
-- window_end (then window_closed, appended by the engine, is true).
SELECT
    vehicle_id,
    window_start,
    window_end,
    COUNT(*) AS readings,
    AVG(speed_kmh) AS avg_speed_kmh,
    MAX(speed_kmh) AS max_speed_kmh,
    SUM(CASE WHEN accel_ms2 < -4.0 THEN 1 ELSE 0 END) AS harsh_brakes,
    SUM(distance_m) AS distance_m
FROM readings
GROUP BY vehicle_id, TUMBLE(event_time, INTERVAL '5' MINUTE)
