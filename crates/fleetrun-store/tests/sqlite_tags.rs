//! SQLite-specific checks of target resolution: the SQL reads indexes, never a full table scan.

use fleetrun_core::ids::InstanceId;
use fleetrun_core::targets::TargetSpec;
use fleetrun_store::SqliteStore;

#[test]
fn resolution_reads_indexes_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("fleetrun.db")).expect("open");
    let node = InstanceId::parse("mi-0123456789abcdef0").expect("id");
    let cases = vec![
        vec![TargetSpec::Tag {
            key: "role".into(),
            values: vec!["web".into(), "db".into()],
        }],
        vec![TargetSpec::TagKeys(vec!["team".into(), "owner".into()])],
        vec![
            TargetSpec::InstanceIds(vec![node]),
            TargetSpec::Tag {
                key: "role".into(),
                values: vec!["web".into()],
            },
            TargetSpec::TagKeys(vec!["team".into()]),
        ],
    ];
    for specs in cases {
        let plan = store.explain_resolve_targets(&specs).expect("explain");
        assert!(!plan.is_empty(), "{specs:?}");
        for line in plan.lines() {
            assert!(
                !line.starts_with("SCAN") || line.contains("INDEX"),
                "full scan for {specs:?}:\n{plan}"
            );
        }
        assert!(
            plan.contains("node_tags_by_tag") || plan.contains("INDEX"),
            "{plan}"
        );
    }
}
