-- One row per question of a survey. Questions only know their parent row, so the join to
-- surveys is structural: it gives each question its survey_id.
SELECT
    s.id AS survey_id,
    q.id AS question_id,
    q.type AS question_type,
    q.text AS question_text,
    q._dlt_list_idx AS question_position
FROM surveys__questions AS q
JOIN surveys AS s
    ON q._dlt_parent_id = s._dlt_id
