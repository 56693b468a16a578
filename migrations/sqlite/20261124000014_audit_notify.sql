-- PostgreSQL's migration 14 announces appended audit rows with NOTIFY for the
-- activity hubs of every instance. SQLite serves one instance, whose hub hears
-- of commits in-process; nothing to do here but keep the numbering aligned.
SELECT 1;
