-- One row per response, as loaded (dlt merges on id). A response is "responded" when created.
SELECT
    id AS response_id,
    survey_id,
    device_id,
    created_at AS responded_at,
    updated_at,
    comment AS comment_text
FROM survey_responses
