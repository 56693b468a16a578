//! `docs/configuration.md` lists exactly the variables [`Config`] reads.
//!
//! The set read is not written down a second time here: the configuration is
//! loaded through a lookup that records every name asked for, over a few
//! environments chosen so that every conditional read happens at least once
//! (the OTLP signal variables are read only when export is on, `LOG_LEVEL`
//! only without `RUST_LOG`). The documented set is the first column of the
//! table under `## Variables`; the page's other tables (variables read by
//! the exporter, the tests or CI) are not counted.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::OsString;

use super::Config;

const PAGE: &str = include_str!("../../docs/configuration.md");

/// Environments that, between them, take every branch that reads a variable.
const ENVIRONMENTS: &[&[(&str, &str)]] = &[
    &[],
    &[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector.example:4318",
        ),
        ("RUST_LOG", "info"),
    ],
];

fn variables_read() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    for vars in ENVIRONMENTS {
        Config::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
        .expect("each recorded environment is a valid configuration");
    }
    asked.into_inner()
}

/// The backticked names in the first cell of each row of the table under
/// `## Variables` (a row may name several: `` `SSE_MAX_STREAMS_PER_TENANT`, `SSE_MAX_STREAMS` ``).
fn variables_documented(page: &str) -> BTreeSet<String> {
    let section = page
        .split("\n## ")
        .find(|s| s.starts_with("Variables\n"))
        .expect("docs/configuration.md has a `## Variables` section");
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let first_cell = line.split('|').nth(1).unwrap_or_default();
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_configuration_page_lists_exactly_the_variables_config_reads() {
    let read = variables_read();
    let documented = variables_documented(PAGE);
    // A recorder that saw nothing would make the comparison below vacuous.
    assert!(read.contains("DATABASE_URL") && read.contains("OTEL_SERVICE_NAME"));
    assert!(read.contains("LOG_LEVEL") && read.contains("RUST_LOG"));
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let not_read: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && not_read.is_empty(),
        "docs/configuration.md and Config disagree.\n\
         read by Config but not in the `## Variables` table: {undocumented:?}\n\
         in the table but not read by Config: {not_read:?}"
    );
}

#[test]
fn the_page_parser_reads_every_name_of_a_row_and_only_that_section() {
    let page = "# C\n\n## Variables\n\n| variable | default | meaning |\n|---|---|---|\n\
                | `A_B`, `C` | `1` | uses `NOT_A_NAME` |\n| `D` | — | x |\n\n\
                ## Read elsewhere\n\n| `E` | the tests | y |\n";
    let names: Vec<_> = variables_documented(page).into_iter().collect();
    assert_eq!(names, ["A_B", "C", "D"]);
}
