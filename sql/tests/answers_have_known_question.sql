-- Every live answer is to a question its response's survey has had at some point (the question
-- history keeps dropped and re-created ones), else its score would be lost. Answers of marked
-- responses reach no mart (and a --full-refresh of surveys forgets a deleted survey's
-- questions), so they are not checked. Nor is an answer given before the history of its survey
-- began (the first sync that listed it) to a question the survey no longer lists: that question
-- was dropped before any sync could see it, and the API never names it again, so a tenant whose
-- surveys were ever edited would fail this test on every build from its first sync. A question
-- still listed, or an answer given since, must be known.
WITH history_began AS (
    SELECT survey_id, MIN(valid_from) AS began
    FROM stg_survey_question_history
    GROUP BY survey_id
)

SELECT a.response_id, a.survey_id, a.question_id
FROM stg_survey_answers AS a
JOIN stg_survey_responses AS r
    ON r.response_id = a.response_id
LEFT JOIN history_began AS h
    ON h.survey_id = a.survey_id
WHERE a.question_type IS NULL
    AND a.deleted_at IS NULL
    AND (a.question_is_current OR h.began IS NULL OR r.responded_at >= h.began)
