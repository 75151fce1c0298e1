-- One row per survey, as loaded (dlt merges on id). deleted_at is when a sync first saw the
-- survey gone from the full survey list, NULL while it is listed: marked rows stay here, the
-- marts leave them (and their responses) out.
SELECT
    id AS survey_id,
    name AS survey_name,
    created_at,
    updated_at,
    deleted_at
FROM surveys
