-- One row per live device (erased upstream, deleted_at set: left out) with its response
-- activity, counted over fct_survey_responses (live responses of live surveys). The windows are
-- relative to the build's as_of (stg_run_context), not to the database clock, so a rebuild is
-- reproducible.
WITH activity AS (
    SELECT
        f.device_id,
        MIN(f.responded_at) AS first_response_at,
        MAX(f.responded_at) AS last_response_at,
        -- COUNT, not SUM(CASE … THEN 1 ELSE 0 END): an integer on every warehouse (fakesnow's
        -- SUM returns a double). Hours, not days: PostgreSQL subtracts days from a timestamptz
        -- in its session's time zone, 167 or 169 hours across a daylight-saving change.
        COUNT(
            CASE
                WHEN f.responded_at > c.as_of - INTERVAL 168 HOUR AND f.responded_at <= c.as_of
                    THEN 1
            END
        ) AS responses_last_7d,
        COUNT(
            CASE
                WHEN f.responded_at > c.as_of - INTERVAL 720 HOUR AND f.responded_at <= c.as_of
                    THEN 1
            END
        ) AS responses_last_30d
    FROM fct_survey_responses AS f
    CROSS JOIN stg_run_context AS c
    GROUP BY f.device_id
)

SELECT
    d.device_id,
    d.device_name,
    d.status,
    d.location_id,
    d.timezone,
    d.created_at,
    d.updated_at,
    a.first_response_at,
    a.last_response_at,
    COALESCE(a.responses_last_7d, 0) AS responses_last_7d,
    COALESCE(a.responses_last_30d, 0) AS responses_last_30d,
    -- Only active devices can go quiet; an inactive one is expected to be silent.
    COALESCE(d.status = 'active' AND COALESCE(a.responses_last_7d, 0) = 0, FALSE) AS is_silent,
    c.as_of
FROM stg_devices AS d
LEFT JOIN activity AS a
    ON a.device_id = d.device_id
CROSS JOIN stg_run_context AS c
WHERE d.deleted_at IS NULL
