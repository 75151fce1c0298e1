-- (survey_id, device_id, response_date) is unique; survey_id and response_date are not null.
-- device_id may be: the responses that name no device make one row a day (GROUP BY puts NULLs
-- together), see responses_have_known_device.
SELECT survey_id, device_id, response_date, COUNT(*) AS rows_with_key
FROM mart_nps_daily
GROUP BY survey_id, device_id, response_date
HAVING survey_id IS NULL OR response_date IS NULL OR COUNT(*) > 1
