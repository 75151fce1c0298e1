-- Every answer is to a question its response's survey has had at some point (the question
-- history keeps dropped and re-created ones), else its score would be lost.
SELECT response_id, survey_id, question_id
FROM stg_survey_answers
WHERE question_type IS NULL
