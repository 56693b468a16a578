//! The attacker's view (issue 21): each file plays one kind of attack
//! against the real service on both backends, and asserts what a user of
//! the trail would see: nothing hidden, nothing forged, nobody locked out,
//! no internal host reached, no secret stored.

// Each attack's module is declared below, one line each.
mod anonymous;
mod approval;
mod authz;
mod creative_ids;
mod csv;
mod dashboard_headers;
mod health_details;
mod ingest;
mod lockout;
mod log_id;
mod metrics_access;
mod money;
mod outbound;
mod redaction;
mod streams;
mod token_lifecycle;
mod violations;
