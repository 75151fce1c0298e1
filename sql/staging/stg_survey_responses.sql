-- One row per response, as loaded (dlt merges on id). A response is "responded" when created.
-- deleted_at is set by the sync when the response was erased upstream (--reconcile) or its
-- survey is gone from the survey list, NULL while it exists: marked rows stay here, the marts
-- leave them out.
SELECT
    id AS response_id,
    survey_id,
    device_id,
    created_at AS responded_at,
    updated_at,
    comment AS comment_text,
    deleted_at
FROM survey_responses
