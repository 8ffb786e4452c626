//! `peerdoc-bench --quick` runs to the end and writes a JSON report with every section,
//! each with figures and none failed. Behaviour only: no figure is checked against a
//! time.

use std::process::Command;

const SECTIONS: [&str; 7] = [
    "reconnect",
    "cold_sync",
    "trace",
    "latency",
    "durable_writes",
    "startup",
    "memory",
];

#[test]
fn quick_run_writes_every_section() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("work dir");
    let json = work.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_peerdoc-bench"))
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .arg("--work-dir")
        .arg(work.path().join("work"))
        .output()
        .expect("run peerdoc-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "peerdoc-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("the JSON report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(report["quick"], true);
    for id in SECTIONS {
        let section = &report["sections"][id];
        assert!(section.is_object(), "section {id} missing:\n{stdout}");
        let notes = section["notes"].as_array().expect("notes");
        assert!(
            !notes
                .iter()
                .any(|n| n.as_str().is_some_and(|n| n.starts_with("FAILED"))),
            "section {id} failed: {notes:?}"
        );
        let rows = section["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "section {id} has no figures");
        for row in rows {
            assert!(row["value"].is_number(), "{id}: a figure is missing: {row}");
            assert!(row.get("baseline_value").is_some(), "{id}: {row}");
        }
        // Printed as a table too.
        assert!(stdout.contains(&format!("### {}", section["title"].as_str().unwrap_or(""))));
    }
}
