-- One row per response with its scores. response_date is the day in the device's timezone
-- when the device has one (a "Monday" in Tokyo is a Monday there), in UTC otherwise.
WITH scores AS (
    SELECT
        response_id,
        MAX(CASE WHEN question_type = 'nps' THEN numeric_value END) AS nps_value,
        MAX(CASE WHEN question_type = 'rating' THEN numeric_value END) AS rating_value
    FROM stg_survey_answers
    GROUP BY response_id
)

SELECT
    r.response_id,
    r.survey_id,
    r.device_id,
    r.responded_at,
    CAST(r.responded_at AT TIME ZONE COALESCE(d.timezone, 'UTC') AS DATE) AS response_date,
    CAST(s.nps_value AS INTEGER) AS nps_score,
    CAST(s.rating_value AS INTEGER) AS rating,
    r.comment_text
FROM stg_survey_responses AS r
LEFT JOIN scores AS s
    ON s.response_id = r.response_id
LEFT JOIN stg_devices AS d
    ON d.device_id = r.device_id
