-- One row per device, as loaded (dlt merges on id). deleted_at is set by the sync when the
-- device was found erased upstream (--reconcile), NULL while it exists: marked rows stay here,
-- the marts leave them out.
SELECT
    id AS device_id,
    name AS device_name,
    status,
    location_id,
    timezone,
    created_at,
    updated_at,
    deleted_at
FROM devices
