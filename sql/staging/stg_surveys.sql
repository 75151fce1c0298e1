-- One row per survey, as loaded (dlt merges on id).
SELECT
    id AS survey_id,
    name AS survey_name,
    created_at,
    updated_at
FROM surveys
