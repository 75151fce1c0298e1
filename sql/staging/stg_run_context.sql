-- One row: the reference time of this build. The runner replaces '{{ as_of }}' with its `now`
-- (default: the wall clock), so "last 7 days" is reproducible and tests can pin it.
SELECT CAST('{{ as_of }}' AS TIMESTAMPTZ) AS as_of
