-- Every response comes from a device we know.
SELECT f.response_id, f.device_id
FROM fct_survey_responses AS f
LEFT JOIN stg_devices AS d
    ON d.device_id = f.device_id
WHERE d.device_id IS NULL
