-- Every response in the marts (live responses of live surveys) belongs to a survey we know.
SELECT f.response_id, f.survey_id
FROM fct_survey_responses AS f
LEFT JOIN stg_surveys AS s
    ON s.survey_id = f.survey_id
WHERE s.survey_id IS NULL
