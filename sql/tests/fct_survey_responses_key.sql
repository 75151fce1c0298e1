-- response_id is unique and not null.
SELECT response_id, COUNT(*) AS rows_with_key
FROM fct_survey_responses
GROUP BY response_id
HAVING response_id IS NULL OR COUNT(*) > 1
