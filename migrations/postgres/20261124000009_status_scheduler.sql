-- The status scheduler's set-based transitions find due buys by status and
-- flight time without scanning the table.
CREATE INDEX media_buys_status_flight_start_idx ON media_buys (status, flight_start);
CREATE INDEX media_buys_status_flight_end_idx ON media_buys (status, flight_end);
