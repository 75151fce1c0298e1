-- (survey_id, device_id, response_date) is unique and not null.
SELECT survey_id, device_id, response_date, COUNT(*) AS rows_with_key
FROM mart_nps_daily
GROUP BY survey_id, device_id, response_date
HAVING survey_id IS NULL OR device_id IS NULL OR response_date IS NULL OR COUNT(*) > 1
