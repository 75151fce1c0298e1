-- Every response in the marts (live) comes from a device we know. A device erased upstream
-- keeps its row, marked (deleted_at), until it is purged, and counts as known: its live
-- responses stay in the marts legitimately (see sql/README.md, "Deletions"). A device id the
-- devices table never held is breakage; no device id at all is not (the API's shape is
-- assumed, not documented: a response taken off a kiosk, say a web link, may name none).
SELECT f.response_id, f.device_id
FROM fct_survey_responses AS f
LEFT JOIN stg_devices AS d
    ON d.device_id = f.device_id
WHERE f.device_id IS NOT NULL AND d.device_id IS NULL
