-- One row per device, as loaded (dlt merges on id). deleted_at is set by the sync when the
-- device was found erased upstream (--reconcile), NULL while it exists: marked rows stay here,
-- the marts leave them out.
SELECT
    id AS device_id,
    name AS device_name,
    status,
    location_id,
    timezone,
    -- The zone the marts take local days in: the timezone when the destination knows it, else
    -- NULL (UTC). A zone it does not know (misspelt, retired, blank, an offset such as
    -- '+05:30', which PostgreSQL would read the POSIX way, east as west) would fail the whole
    -- build; the runner fills in the IANA names every destination reads alike, as IANA spells
    -- them (pipelines/models/time_zones.py).
    CASE
        WHEN TRIM(timezone) IN ('{{ time_zones }}')
            THEN TRIM(timezone)
    END AS local_zone,
    created_at,
    updated_at,
    deleted_at
FROM devices
