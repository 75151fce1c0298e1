-- One row per answer. Values arrive as text; nps and rating answers become numbers, the others
-- stay text. Question ids are matched within the response's survey, not globally.
-- The type is the question's as it was when the response was created, from the question
-- history: the version in force at created_at, else the last version before it (the question
-- was dropped since), else the first one after it (answered before the first sync that saw the
-- question). So answers keep their type when a survey drops or re-creates a question, and
-- question_is_current says whether the survey still lists it. deleted_at is the response's
-- (an answer is marked with the response it belongs to).
-- Question ids are matched as text: an id the API sends as a string on one side (dlt then reads
-- that column as text, see pipelines/models/variants.py) still finds its match, where a text =
-- bigint comparison would fail every build on PostgreSQL, Snowflake and BigQuery.
-- A regex guards the cast because PostgreSQL has no TRY_CAST and Snowflake's only takes text.
-- At most 9 digits before the point: the marts cast scores to INTEGER, 32 bits on DuckDB and
-- PostgreSQL (64 on Snowflake and BigQuery), so a longer one would fail the whole build there
-- and only a data test elsewhere; now scores_are_numbers lists it on every warehouse.
WITH versions AS (
    SELECT
        a._dlt_id AS answer_key,
        h.question_type,
        ROW_NUMBER() OVER (
            PARTITION BY a._dlt_id
            ORDER BY
                CASE WHEN h.valid_from <= r.created_at THEN 0 ELSE 1 END,
                CASE WHEN h.valid_from <= r.created_at THEN h.valid_from END DESC,
                h.valid_from,
                h.question_type
        ) AS version_rank
    FROM survey_responses__answers AS a
    JOIN survey_responses AS r
        ON a._dlt_parent_id = r._dlt_id
    JOIN stg_survey_question_history AS h
        ON h.survey_id = r.survey_id
        AND CAST(h.question_id AS TEXT) = CAST(a.question_id AS TEXT)
)

SELECT
    r.id AS response_id,
    r.survey_id,
    a.question_id,
    v.question_type,
    q.question_id IS NOT NULL AS question_is_current,
    a._dlt_list_idx AS answer_position,
    a.value AS raw_value,
    CASE
        WHEN v.question_type IN ('nps', 'rating')
            AND regexp_matches(TRIM(a.value), '^-?[0-9]{1,9}([.][0-9]+)?$')
            THEN CAST(TRIM(a.value) AS DOUBLE)
    END AS numeric_value,
    CASE
        WHEN v.question_type NOT IN ('nps', 'rating') THEN a.value
    END AS text_value,
    r.deleted_at
FROM survey_responses__answers AS a
JOIN survey_responses AS r
    ON a._dlt_parent_id = r._dlt_id
LEFT JOIN versions AS v
    ON v.answer_key = a._dlt_id
    AND v.version_rank = 1
LEFT JOIN stg_survey_questions AS q
    ON q.survey_id = r.survey_id
    AND CAST(q.question_id AS TEXT) = CAST(a.question_id AS TEXT)
