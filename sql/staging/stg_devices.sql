-- One row per device, as loaded (dlt merges on id).
SELECT
    id AS device_id,
    name AS device_name,
    status,
    location_id,
    timezone,
    created_at,
    updated_at
FROM devices
