-- Marts neither lose nor duplicate rows: their totals equal the staging counts of live rows
-- (deleted_at NULL: live responses of live surveys, live devices).
WITH
live_responses AS (
    SELECT r.response_id
    FROM stg_survey_responses AS r
    WHERE r.deleted_at IS NULL
        AND NOT EXISTS (
            SELECT 1
            FROM stg_surveys AS gone
            WHERE gone.survey_id = r.survey_id
                AND gone.deleted_at IS NOT NULL
        )
),

staged AS (
    SELECT
        (SELECT COUNT(*) FROM live_responses) AS responses,
        (SELECT COUNT(*) FROM stg_devices WHERE deleted_at IS NULL) AS devices,
        (
            SELECT COUNT(DISTINCT a.response_id)
            FROM stg_survey_answers AS a
            JOIN live_responses AS l
                ON l.response_id = a.response_id
            WHERE a.question_type = 'nps' AND a.numeric_value IS NOT NULL
        ) AS nps_responses
),

marts AS (
    SELECT
        (SELECT COUNT(*) FROM fct_survey_responses) AS fct_responses,
        (SELECT SUM(responses) FROM mart_nps_daily) AS daily_responses,
        (SELECT SUM(nps_responses) FROM mart_nps_daily) AS daily_nps_responses,
        (SELECT SUM(promoters + passives + detractors) FROM mart_nps_daily) AS daily_nps_buckets,
        (SELECT COUNT(*) FROM dim_devices) AS dim_devices
),

checks AS (
    SELECT 'fct_survey_responses rows' AS check_name, s.responses AS expected,
        m.fct_responses AS actual
    FROM staged AS s CROSS JOIN marts AS m
    UNION ALL
    SELECT 'mart_nps_daily responses', s.responses, m.daily_responses
    FROM staged AS s CROSS JOIN marts AS m
    UNION ALL
    SELECT 'mart_nps_daily nps_responses', s.nps_responses, m.daily_nps_responses
    FROM staged AS s CROSS JOIN marts AS m
    UNION ALL
    SELECT 'mart_nps_daily promoters+passives+detractors', s.nps_responses, m.daily_nps_buckets
    FROM staged AS s CROSS JOIN marts AS m
    UNION ALL
    SELECT 'dim_devices rows', s.devices, m.dim_devices
    FROM staged AS s CROSS JOIN marts AS m
)

SELECT check_name, expected, actual
FROM checks
-- An empty mart sums to NULL, which must equal a staged count of 0.
WHERE COALESCE(actual, 0) <> expected
