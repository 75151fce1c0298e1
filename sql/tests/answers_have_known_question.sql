-- Every answer is to a question of its response's survey (else its score would be lost).
SELECT response_id, survey_id, question_id
FROM stg_survey_answers
WHERE question_type IS NULL
