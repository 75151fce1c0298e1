-- Every live answer is to a question its response's survey has had at some point (the question
-- history keeps dropped and re-created ones), else its score would be lost. Answers of marked
-- responses reach no mart (and a --full-refresh of surveys forgets a deleted survey's
-- questions), so they are not checked.
SELECT response_id, survey_id, question_id
FROM stg_survey_answers
WHERE question_type IS NULL
    AND deleted_at IS NULL
