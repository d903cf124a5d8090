//! A step printing 200 MB, alone in this test binary so that its peak memory (VmHWM) is the
//! executor's: the step ends Success, the agent's memory does not grow with the output, the
//! report stays small, and the whole output is in the step's `stdout` file.

use std::io::Read;

use fleetrun_agent::executor::{run_command, stop_pair, ExecConfig};
use fleetrun_wire::agent::{Outcome, StepSpec, MAX_REPORT_BYTES, REPORT_STDOUT_CHARS};

const OUTPUT_BYTES: u64 = 200_000_000;

/// This process's peak resident memory, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

#[tokio::test]
async fn two_hundred_megabytes_end_success_with_bounded_memory_and_the_whole_file_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ExecConfig::new(dir.path().join("work"));
    let step = StepSpec {
        name: "aws:runShellScript".into(),
        action: "aws:runShellScript".into(),
        commands: vec![
            format!("head -c {OUTPUT_BYTES} /dev/zero | tr '\\0' a"),
            "echo finished >&2".into(),
        ],
        working_directory: String::new(),
        timeout_seconds: 600,
    };
    let before = peak_rss();
    let (_stop, signal) = stop_pair();
    let report = run_command(&cfg, "cmd-big", &[step], &[], "AWS-RunShellScript", signal).await;
    let encoded = serde_json::to_vec(&report).expect("json");
    let grown = peak_rss().saturating_sub(before);

    assert_eq!(
        (report.outcome, report.response_code),
        (Outcome::Success, 0)
    );
    // The old executor kept 8 MiB of each stream in memory, and the report as much again.
    assert!(grown < 8 * 1024 * 1024, "peak memory grew by {grown} bytes");
    assert!(
        encoded.len() < 64 * 1024 && encoded.len() < MAX_REPORT_BYTES,
        "{} bytes",
        encoded.len()
    );
    let s = &report.steps[0];
    assert_eq!(s.stdout, "a".repeat(REPORT_STDOUT_CHARS));
    assert!(s.stdout_truncated);
    assert_eq!(
        (s.stderr.as_str(), s.stderr_truncated),
        ("finished\n", false)
    );

    let path = cfg.step_dir("cmd-big", 0).join("stdout");
    let mut file = std::fs::File::open(&path).expect("stdout file");
    assert_eq!(file.metadata().expect("meta").len(), OUTPUT_BYTES);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        assert!(
            buf[..n].iter().all(|&b| b == b'a'),
            "unexpected bytes near {total}"
        );
        total += n as u64;
    }
    assert_eq!(total, OUTPUT_BYTES);
}
