-- Live nps and rating answers are whole numbers when given (fct_survey_responses casts to
-- integer; answers of marked responses reach no mart).
SELECT response_id, question_id, question_type, raw_value
FROM stg_survey_answers
WHERE question_type IN ('nps', 'rating')
    AND deleted_at IS NULL
    AND raw_value IS NOT NULL
    AND (numeric_value IS NULL OR numeric_value <> FLOOR(numeric_value))
