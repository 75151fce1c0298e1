-- Every version of every question a survey has had (the survey_questions table, dlt scd2): a
-- version was listed from valid_from until valid_to, the syncs that first saw it and first
-- saw it gone (valid_to is NULL while it is listed, or its survey is no longer listed at all).
SELECT
    survey_id,
    id AS question_id,
    type AS question_type,
    text AS question_text,
    valid_from,
    valid_to
FROM survey_questions
