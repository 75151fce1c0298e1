-- One row per live response of a live survey, with its scores. response_date is the day in the
-- device's timezone when the device has one (a "Monday" in Tokyo is a Monday there), in UTC
-- otherwise (stg_devices.local_zone).
-- Deletions: rows the sync marked (deleted_at) are left out as if they had been purged: a
-- marked response, and every response of a marked survey (the sync marks those too; the survey
-- is checked as well, so a build between a load and its marks already leaves them out). A live
-- response from a device erased upstream stays, with its own device_id; the device's columns
-- are NULL for it (its timezone too, so its day is UTC's), as after a purge of the device.
WITH scores AS (
    SELECT
        response_id,
        MAX(CASE WHEN question_type = 'nps' THEN numeric_value END) AS nps_value,
        MAX(CASE WHEN question_type = 'rating' THEN numeric_value END) AS rating_value
    FROM stg_survey_answers
    WHERE deleted_at IS NULL
    GROUP BY response_id
)

SELECT
    r.response_id,
    r.survey_id,
    r.device_id,
    r.responded_at,
    CAST(r.responded_at AT TIME ZONE COALESCE(d.local_zone, 'UTC') AS DATE) AS response_date,
    CAST(s.nps_value AS INTEGER) AS nps_score,
    CAST(s.rating_value AS INTEGER) AS rating,
    r.comment_text
FROM stg_survey_responses AS r
LEFT JOIN scores AS s
    ON s.response_id = r.response_id
LEFT JOIN stg_devices AS d
    ON d.device_id = r.device_id
    AND d.deleted_at IS NULL
WHERE r.deleted_at IS NULL
    AND NOT EXISTS (
        SELECT 1
        FROM stg_surveys AS gone
        WHERE gone.survey_id = r.survey_id
            AND gone.deleted_at IS NOT NULL
    )
