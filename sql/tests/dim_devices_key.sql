-- device_id is unique and not null.
SELECT device_id, COUNT(*) AS rows_with_key
FROM dim_devices
GROUP BY device_id
HAVING device_id IS NULL OR COUNT(*) > 1
