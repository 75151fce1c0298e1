-- One row per answer. Values arrive as text; nps and rating answers become numbers, the others
-- stay text. Question ids are matched within the response's survey, not globally.
-- A regex guards the cast because PostgreSQL has no TRY_CAST and Snowflake's only takes text.
SELECT
    r.id AS response_id,
    r.survey_id,
    a.question_id,
    q.question_type,
    a._dlt_list_idx AS answer_position,
    a.value AS raw_value,
    CASE
        WHEN q.question_type IN ('nps', 'rating')
            AND regexp_matches(TRIM(a.value), '^-?[0-9]+([.][0-9]+)?$')
            THEN CAST(TRIM(a.value) AS DOUBLE)
    END AS numeric_value,
    CASE
        WHEN q.question_type NOT IN ('nps', 'rating') THEN a.value
    END AS text_value
FROM survey_responses__answers AS a
JOIN survey_responses AS r
    ON a._dlt_parent_id = r._dlt_id
LEFT JOIN stg_survey_questions AS q
    ON q.survey_id = r.survey_id
    AND q.question_id = a.question_id
