-- NPS per survey, device and local day. nps is null on days without any nps answer, rather
-- than 0, which would read as "as many promoters as detractors".
WITH daily AS (
    SELECT
        survey_id,
        device_id,
        response_date,
        COUNT(*) AS responses,
        COUNT(nps_score) AS nps_responses,
        -- COUNT, not SUM(CASE … THEN 1 ELSE 0 END): an integer on every warehouse (fakesnow's
        -- SUM returns a double).
        COUNT(CASE WHEN nps_score BETWEEN 9 AND 10 THEN 1 END) AS promoters,
        COUNT(CASE WHEN nps_score BETWEEN 7 AND 8 THEN 1 END) AS passives,
        COUNT(CASE WHEN nps_score BETWEEN 0 AND 6 THEN 1 END) AS detractors
    FROM fct_survey_responses
    GROUP BY survey_id, device_id, response_date
)

SELECT
    survey_id,
    device_id,
    response_date,
    responses,
    nps_responses,
    promoters,
    passives,
    detractors,
    -- The cast to DECIMAL before ROUND: PostgreSQL has no ROUND(double, int), and decimals
    -- round half away from zero the same way everywhere.
    CASE
        WHEN nps_responses > 0
            THEN ROUND(CAST(100.0 * (promoters - detractors) / nps_responses AS DECIMAL(18, 6)), 1)
    END AS nps
FROM daily
