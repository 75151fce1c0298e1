-- One row per device, as loaded (dlt merges on id). deleted_at is set by the sync when the
-- device was found erased upstream (--reconcile), NULL while it exists: marked rows stay here,
-- the marts leave them out.
SELECT
    id AS device_id,
    name AS device_name,
    status,
    location_id,
    timezone,
    -- The zone the marts take local days in: the timezone when it has the shape of an IANA
    -- name, else NULL (UTC). A blank one, or an offset such as '+05:30', would fail the
    -- whole build on DuckDB, and PostgreSQL reads an offset the POSIX way, east as west.
    CASE
        WHEN regexp_matches(
            TRIM(timezone),
            '^([A-Za-z_]+(/[A-Za-z_-]+)*|Etc/GMT[+-][0-9]{1,2}|[A-Z]{3}[0-9][A-Z]{3})$'
        )
            THEN TRIM(timezone)
    END AS local_zone,
    created_at,
    updated_at,
    deleted_at
FROM devices
