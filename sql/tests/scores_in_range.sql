-- nps_score is 0 to 10 and rating 1 to 5 when present.
SELECT response_id, nps_score, rating
FROM fct_survey_responses
WHERE nps_score NOT BETWEEN 0 AND 10
    OR rating NOT BETWEEN 1 AND 5
